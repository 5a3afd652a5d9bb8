"""Checkpoint files without the model's code: ``safetensors_header`` and ``pytorch_file`` (safetensors
headers, bounded pickles) read files into ``entries``, and ``inspect`` (names, shapes, dtypes and totals)."""

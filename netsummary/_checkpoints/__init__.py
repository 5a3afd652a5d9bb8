"""Checkpoint files without the model's code: ``safetensors_header`` and ``pytorch_file`` (safetensors
headers, bounded pickles) read files into ``entries``, ``inspect`` sums them into a ``summary`` (names,
shapes, dtypes and totals)."""

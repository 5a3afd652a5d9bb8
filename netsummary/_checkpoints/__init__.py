"""Checkpoint files without the model's code: ``reader`` (safetensors headers, bounded pickles)
and ``inspect`` (names, shapes, dtypes and totals)."""

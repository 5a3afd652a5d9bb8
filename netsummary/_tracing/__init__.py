"""Tracing: turn the caller's inputs into one forward call and record it, leaving the model as it was.

``inputs`` (what to feed) -> ``model`` (what runs: eager original, meta copy) -> ``trace`` (two
global hooks, one forward) inside ``guard`` (restore what the summary changed, using ``watch``,
``interrupts`` and ``switches``); ``structure`` and ``batch`` describe the values seen.
"""

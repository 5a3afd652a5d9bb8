"""Reporting: a Summary to text and data. The only layer that makes strings and units.

``render`` (the classic torchsummary table), ``table``, ``columns`` and ``fold`` (the tree view),
``formats`` (the registry of output formats), ``export`` (JSON/CSV), ``load`` (JSON back to a Summary),
``diff`` (two summaries), ``failure`` (what a user sees when their forward raises).
"""

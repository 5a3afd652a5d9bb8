"""The command line and CI: ``cli`` (``main(argv) -> int``), ``parsers`` (its arguments), ``target``
(load a model from a path), ``config`` (``[tool.netsummary]``) and ``budget`` (limits on a summary's
figures)."""

"""``python -m netsummary``: the command line of :mod:`netsummary._commandline.cli`."""
from ._commandline.cli import main
raise SystemExit(main())

"""``python -m netsummary``: the command line of :mod:`netsummary._cli`."""
from ._cli import main
raise SystemExit(main())

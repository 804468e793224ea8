"""`python -m ops ...`: see `ops.cli`."""

from ops.cli import main

raise SystemExit(main())

"""Allow `python -m linegate`."""

from linegate.cli import main

raise SystemExit(main())

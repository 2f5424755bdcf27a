"""``python -m emovox``: the same as the ``emovox`` command."""
from .cli import main

raise SystemExit(main())

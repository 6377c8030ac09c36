"""``python -m librarian_async``."""

from librarian_async.cli import main

raise SystemExit(main())

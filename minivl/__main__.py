"""``python -m minivl`` is the ``minivl`` command."""

import sys

from minivl.cli import main

sys.exit(main())

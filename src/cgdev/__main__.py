"""``python -m cgdev`` is the same as the ``cgdev`` console script."""

import sys

from cgdev.cli.main import main

sys.exit(main())

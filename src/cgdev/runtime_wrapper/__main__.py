"""``python -m cgdev.runtime_wrapper`` is the ``cgdev-runtime`` console script."""

import sys

from cgdev.runtime_wrapper.entry import main

sys.exit(main())

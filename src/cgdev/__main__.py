"""``python -m cgdev`` is the same as the ``cgdev`` console script."""

from cgdev.cli.main import entry

entry()

"""``python -m cgdev.runtime_wrapper`` is the ``cgdev-runtime`` console script."""

from cgdev.runtime_wrapper.entry import entry

entry()

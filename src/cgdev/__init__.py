"""cgdev: control, explain and repair which devices a Linux container may open.

The package is split into a pure core (``cgdev.core``: no I/O, importable anywhere),
thin adapters to the outside world (``cgdev.adapters``), and front ends (``cgdev.cli``,
``cgdev.lab``).  See docs/ and the project README.
"""

__version__ = "0.1.0"

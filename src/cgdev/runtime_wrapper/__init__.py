"""The wrapper runtime front end (``cgdev-runtime``, ``cgdev runtime``): see ``entry``."""

"""``cgdev hook``: an OCI hook that grants a new container its entitled devices on every layer.

A front end (DESIGN.md §2): ``entry`` is the runtime-facing entry point (kept nearly import-free,
see there), ``run`` does the work through ``ops.entitled`` and ``ops.prevent``, ``install``
writes the hooks.d file, ``command`` is the ``cgdev hook`` sub-command.  Nothing is imported
here: the entry point's cost is the package's cost.
"""

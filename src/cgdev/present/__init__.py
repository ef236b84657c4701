"""Presentation shared by every front end: the human view (rich, imported lazily) and ``--json``.

Front ends (cli, lab, hook, runtime, daemon) render results only through this package, so one
result prints the same way whichever front end produced it.
"""

"""Shared test set-up: kernel fixtures, the lab fixture, and hypothesis profiles."""

import os

from hypothesis import settings

# Kernel fixtures (scratch cgroups, probe, root/bpf skip) live in fixtures_kernel.py.
from fixtures_kernel import *  # noqa: F403

# The session-scoped real lab (systemd + D-Bus + crun/runc) lives in fixtures_lab.py.
from fixtures_lab import *  # noqa: F403

# CI must be reproducible: the same examples on every run (exploration happens on developers'
# machines, where hypothesis keeps its example database).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Kernel fixtures (scratch cgroups, probe, root/bpf skip) live in fixtures_kernel.py.
from fixtures_kernel import *  # noqa: F403

# The session-scoped real lab (systemd + D-Bus + crun/runc) lives in fixtures_lab.py.
from fixtures_lab import *  # noqa: F403

# Kernel fixtures (scratch cgroups, probe, root/bpf skip) live in fixtures_kernel.py.
from fixtures_kernel import *  # noqa: F403

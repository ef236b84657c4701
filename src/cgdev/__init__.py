"""cgdev: control, explain and repair which devices a Linux container may open.

The package is split into a pure core (``cgdev.core``: no I/O, importable anywhere),
thin adapters to the outside world (``cgdev.adapters``), and front ends (``cgdev.cli``,
``cgdev.lab``).  See docs/ and the project README.

Records are ``msgspec.Struct`` classes rather than dataclasses on the paths of the processes that
must start fast (``cgdev grant``, ``cgdev-hook``, ``cgdev-runtime``): msgspec is loaded there
anyway, a Struct class is created in ~0.01 ms and a dataclass in ~0.4 ms (it compiles its methods
from source), and ~50 of them were a fifth of a grant's CPU time.  Those left on these paths
(``Request``, ``Rule``: constructors that coerce; ``StepFn``, ``LiftedRule``: fields left out of
equality) need what only dataclasses offer.
"""

__version__ = "0.1.0"

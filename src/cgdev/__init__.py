"""cgdev: control, explain and repair which devices a Linux container may open.

The package is split into a pure core (``cgdev.core``: no I/O, importable anywhere),
thin adapters to the outside world (``cgdev.adapters``), and front ends (``cgdev.cli``,
``cgdev.lab``).  See docs/ and the project README.

Records are ``msgspec.Struct`` classes rather than dataclasses wherever a short-lived process
(``cgdev grant``, ``cgdev-hook``, ``cgdev-runtime``) loads them: msgspec is loaded on those paths
anyway, a Struct class is created in ~0.01 ms and a dataclass in ~0.4 ms (it compiles its
methods from source), and ~50 of them were a fifth of a grant's CPU time.  The few left
(``Request``, ``Rule``: constructors that coerce; ``StepFn``, ``LiftedRule``: fields excluded from
equality) need what only dataclasses offer.
"""

__version__ = "0.1.0"

"""CDI names for every command: ``vendor/class=name`` -> the devices and allow rules it grants.

Any command taking a DEVICE (explain, grant, the hook, the wrapper runtime) routes an argument that
``is_cdi_name`` accepts here, so all of them read a CDI name exactly as an engine injecting it
would: the node's spec directories, later ones overriding earlier ones, missing numbers filled
from the host node.
"""

from __future__ import annotations

from collections.abc import Sequence

from cgdev.adapters.cdi_dirs import DEFAULT_DIRS, host_node, load_registry
from cgdev.core.cdi import CdiRegistry, CdiResolution, is_qualified_name, resolve

is_cdi_name = is_qualified_name


def cdi_registry(dirs: Sequence[str] = DEFAULT_DIRS) -> CdiRegistry:
    """Every CDI device the node's spec directories define, with the errors of broken files."""
    return load_registry(dirs)


def resolve_cdi_names(
    names: Sequence[str], dirs: Sequence[str] = DEFAULT_DIRS, registry: CdiRegistry | None = None
) -> CdiResolution:
    """The OCI edits injecting ``names`` makes (``NotFound`` for a name no valid spec defines;
    ``InputError`` naming file and field when a spec disagrees with the host node)."""
    return resolve(registry if registry is not None else load_registry(dirs), names, host_node)

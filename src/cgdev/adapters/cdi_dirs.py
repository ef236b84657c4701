"""Reading CDI spec directories and host device nodes: the I/O half of ``cgdev.core.cdi``.

The scan is the reference library's: the directories in order (``/etc/cdi`` then ``/var/run/cdi``,
a later one overriding an earlier one), in each the files ending ``.json`` or ``.yaml`` in name
order, no recursion, a missing directory skipped.  A broken file is one error and never hides the
good files next to it, as in the engines.  Both encodings are read the way the reference reads
them (its YAML decoder reads JSON too, and refuses duplicate keys); yaml is imported only when a
file needs it.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from typing import Any, Final

from cgdev.adapters.cdi_cache import spec_files
from cgdev.core.cdi import CdiRegistry, HostNode, LoadedSpec, build_registry, parse_spec
from cgdev.errors import InputError

DEFAULT_DIRS: Final[tuple[str, ...]] = ("/etc/cdi", "/var/run/cdi")
# A spec is a few kB; a bound keeps a hostile or runaway file from costing the hook its budget.
MAX_SPEC_BYTES: Final = 4 << 20


def _file_error(path: str, why: str, value: object = None) -> InputError:
    return InputError(why, field=path, value=value)


class _DuplicateKey(ValueError):
    def __init__(self, key: object, line: int) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key
        self.line = line


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key, 0)
        result[key] = value
    return result


def _yaml_load(text: str) -> Any:
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc,valid-type]  # base picked at run time: C or Python loader
        pass

    def mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        loader.flatten_mapping(node)
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                raise _DuplicateKey(key, key_node.start_mark.line + 1) from None
            if duplicate:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
        return yaml.constructor.SafeConstructor.construct_mapping(loader, node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return yaml.load(text, Loader=Loader)  # a SafeLoader subclass


def decode_spec_file(path: str) -> object:
    """The decoded document of one spec file, or an InputError naming the file (and line)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except OSError as err:
        raise _file_error(path, f"cannot read: {err.strerror}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise _file_error(path, f"larger than {MAX_SPEC_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _file_error(path, f"not UTF-8 (byte {err.start})") from None
    if path.endswith(".json"):
        try:
            return json.loads(text, object_pairs_hook=_json_pairs)
        except _DuplicateKey as err:
            raise _file_error(path, f"duplicate key {err.key!r} in a JSON object") from None
        except json.JSONDecodeError as json_err:
            # The reference reads .json with its YAML decoder, so YAML content there is accepted.
            try:
                document = _yaml_load(text)
            except Exception:
                where = f"{path}: line {json_err.lineno} column {json_err.colno}"
                raise _file_error(where, f"not JSON: {json_err.msg}") from None
            if not isinstance(document, dict):
                raise _file_error(path, f"not JSON: {json_err.msg}") from None
            return document
    import yaml

    try:
        document = _yaml_load(text)
    except _DuplicateKey as err:
        why = f"duplicate key {err.key!r} in a YAML mapping"
        raise _file_error(f"{path}: line {err.line}", why) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}: line {mark.line + 1} column {mark.column + 1}" if mark else path
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise _file_error(where, f"not YAML: {problem}") from None
    return document


def read_spec_file(path: str) -> object:
    """A spec file decoded and validated: a ``CdiSpec``, or an InputError naming file and field."""
    document = decode_spec_file(path)
    if document is None:
        raise _file_error(path, "empty spec file")
    if not isinstance(document, dict):
        raise _file_error(f"{path}: (document)", "not an object", type(document).__name__)
    return parse_spec(document, path)


def load_registry(dirs: Sequence[str] = DEFAULT_DIRS) -> CdiRegistry:
    """Every spec of ``dirs``: the devices they define, and one error per broken file."""
    dirs = tuple(os.path.normpath(d) for d in dirs)
    files, errors = spec_files(dirs)
    loaded: list[LoadedSpec] = []
    for path, priority in files:
        try:
            spec = read_spec_file(path)
        except InputError as err:
            errors.append(err)
            continue
        loaded.append(LoadedSpec(path, priority, spec))  # type: ignore[arg-type]  # msgspec's decoded Spec
    return build_registry(dirs, loaded, errors)


def host_node(path: str) -> HostNode | None:
    """``lstat`` of a host path (a symlink is not followed, as in the reference): its type
    (``b``, ``c``, ``p``, or "" for any other file), numbers and permission bits; None if absent."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    mode = st.st_mode
    kind = "b" if stat.S_ISBLK(mode) else "c" if stat.S_ISCHR(mode) else "p" if stat.S_ISFIFO(mode) else ""
    return HostNode(kind, os.major(st.st_rdev), os.minor(st.st_rdev), stat.S_IMODE(mode))

"""``cgdev cdi list`` and ``cgdev cdi show NAME``: the node's CDI devices, read as an engine reads them."""

from __future__ import annotations

import argparse
import sys

from cgdev.present.json_out import print_json

HELP = "list the node's CDI devices, or show what injecting one adds (devices and cgroup rules)"
DESCRIPTION = """\
Read the CDI spec directories (/etc/cdi, then /var/run/cdi, a later one overriding an earlier one;
JSON and YAML, cdiVersion 0.3.0 to 1.1.0) exactly as the CDI reference library does, and

  cgdev cdi list                     every device by its name vendor/class=name
  cgdev cdi show vendor.com/gpu=0    the linux.devices and linux.resources.devices entries (and the
                                     env, mounts, hooks) an engine injecting it adds, with the type
                                     and numbers missing from the spec taken from the host node

A broken spec file (unknown field, a field newer than its cdiVersion, a bad name...) is one line
on stderr naming the file, the field and the value; the other files are still read, as engines do.
Exit status: 0 done, 2 a spec file is broken (list) or the name resolves to nothing (show),
3 a host node is missing.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help_text in (("list", "every CDI device of the spec directories"),
                            ("show", "what injecting the named devices adds to a container")):  # fmt: skip
        sub = actions.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        if name == "show":
            sub.add_argument("names", nargs="+", metavar="NAME", help="vendor/class=name")
        sub.add_argument(
            "--spec-dir", action="append", metavar="DIR", dest="spec_dirs",
            help="a spec directory, instead of /etc/cdi and /var/run/cdi (repeat; later ones override)",
        )  # fmt: skip
        sub.add_argument("--json", action="store_true", help="machine-readable output")


def _warn(errors: tuple[object, ...], prefix: str = "") -> None:
    for err in errors:
        print(f"cgdev cdi: {prefix}{err}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from cgdev.adapters.cdi_dirs import DEFAULT_DIRS
    from cgdev.ops.cdi_names import cdi_registry, resolve_cdi_names

    registry = cdi_registry(args.spec_dirs or DEFAULT_DIRS)
    if args.action == "list":
        from cgdev.core.cdi import entry_summary

        if args.json:
            print_json({
                "dirs": list(registry.dirs),
                "devices": [entry_summary(e) for e in registry.devices.values()],
                "errors": [str(e) for e in registry.errors],
            })  # fmt: skip
        else:
            _print_list(registry)
        _warn(registry.errors)
        return 2 if registry.errors else 0
    from cgdev.core.cdi import resolution_json
    from cgdev.errors import CgdevError

    try:
        resolution = resolve_cdi_names(args.names, registry=registry)
    except CgdevError as err:  # the resolver names the DEVICE of grant/explain; here it is NAME
        print(f"cgdev cdi: {err.render({'device': 'NAME'})}", file=sys.stderr)
        return err.exit_code
    _warn(registry.errors, "warning: ")
    if args.json:
        print_json(resolution_json(resolution))
    else:
        _print_resolution(resolution_json(resolution))
    return 0


def _node_text(node: dict[str, object]) -> str:
    numbers = f"{node.get('major', 0)}:{node.get('minor', 0)}" if node.get("major") else "?:?"
    where = str(node["path"])
    if node.get("hostPath") and node["hostPath"] != node["path"]:
        where += f" (host {node['hostPath']})"
    return f"{where} {node.get('type') or '?'} {numbers} {node.get('permissions') or 'rwm'}"


def _print_list(registry: object) -> None:
    from cgdev.core.cdi import CdiRegistry, entry_summary

    assert isinstance(registry, CdiRegistry)
    if not registry.devices:
        print(f"no CDI devices in {', '.join(registry.dirs)}")
        return
    rows = [entry_summary(e) for e in registry.devices.values()]
    width = max(len(str(r["name"])) for r in rows)
    for row in rows:
        nodes = ", ".join(_node_text(n) for n in row["deviceNodes"]) or "(no device nodes)"
        print(f"{row['name']:<{width}}  {nodes}  [{row['spec']}]")
        for shadowed in row["shadows"]:
            print(f"{'':<{width}}  overrides {shadowed}")


def _print_resolution(doc: dict[str, object]) -> None:
    linux = doc["linux"]
    assert isinstance(linux, dict)
    print(f"{', '.join(doc['names'])}  (from {', '.join(doc['specs'])})")  # type: ignore[arg-type]  # the JSON document's lists of str
    print("linux.devices:")
    for dev in linux["devices"]:
        mode = f"  fileMode {dev['fileMode']:04o}" if "fileMode" in dev else ""
        print(f"  {dev['path']}  {dev['type']} {dev.get('major', 0)}:{dev.get('minor', 0)}{mode}")
    print("linux.resources.devices:")
    for rule in linux["resources"]["devices"]:
        print(f"  allow {rule['type']} {rule['major']}:{rule['minor']} {rule['access'] or '(none)'}")
    for key in ("env", "mounts", "hooks", "additionalGids"):
        values = doc[key]
        if values:
            print(f"{key}:")
            for value in values:  # type: ignore[attr-defined]  # a list in the JSON document
                print(f"  {value}")

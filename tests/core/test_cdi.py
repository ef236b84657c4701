"""CDI specs read as the reference library reads them: every malformed kind is one line naming the
file, the field and the value (and exit 2 through the CLI); valid specs of every version load;
names resolve to the devices and rules an engine injects, with numbers from real host nodes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from capabilities import skip_unless_ci
from cgdev.adapters.cdi_dirs import host_node, load_registry
from cgdev.core.cdi import (
    VERSIONS,
    CdiSpec,
    OciDevice,
    OciDeviceRule,
    encode_spec,
    is_qualified_name,
    minimum_version,
    parse_spec,
)
from cgdev.core.model import Rule
from cgdev.errors import EnvError, InputError, NotFound
from cgdev.ops.cdi_names import resolve_cdi_names


def node_edits(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"deviceNodes": list(nodes)}


def spec(version: str = "0.3.0", kind: str = "cgdev.test/null", devices: Any = None, **top: Any) -> dict:
    if devices is None:
        devices = [{"name": "null", "containerEdits": node_edits({"path": "/dev/null"})}]
    return {"cdiVersion": version, "kind": kind, "devices": devices, **top}


def dev(name: str = "d", **edits: Any) -> dict[str, Any]:
    return {"name": name, "containerEdits": edits or node_edits({"path": "/dev/null"})}


def with_node(version: str = "0.3.0", **node: Any) -> dict:
    return spec(version, devices=[dev("d", deviceNodes=[{"path": "/dev/null", **node}])])


# (file name, content (a document, or raw text), the field path, a piece of the value or None)
MALFORMED: list[tuple[str, Any, str, str | None]] = [
    ("kind-int.json", spec(kind=7), "kind", "7"),  # wrong type
    ("major-str.json", with_node(major="195"), "devices[0].containerEdits.deviceNodes[0].major", "195"),
    ("major-neg.json", with_node(type="c", major=-1), "deviceNodes[0].major", "-1"),
    ("devices-obj.json", spec(devices={"name": "x"}), "devices", "name"),
    ("vendor.json", spec(kind="1vendor/x"), "kind", "1vendor/x"),  # bad names
    ("class.json", spec(kind="vendor.com/cl@ss"), "kind", "cl@ss"),
    ("noslash.json", spec(kind="vendor"), "kind", "vendor"),
    ("kind3.json", spec(kind="vendor.com/foo/bar"), "kind", "foo/bar"),
    ("devname.json", spec(devices=[dev("gpu!")]), "devices[0].name", "gpu!"),
    ("devname-end.json", spec(devices=[dev("gpu-")]), "devices[0].name", "gpu-"),
    ("unknown-top.json", spec(ociEdits={}), "ociEdits", "{}"),  # unknown fields
    ("unknown-node.json", with_node(containerPath="/dev/x"), "deviceNodes[0].containerPath", "/dev/x"),
    (
        "unknown-rdt.json",
        spec("0.7.0", containerEdits={"intelRdt": {"enableCMB": True}}),
        "containerEdits.intelRdt.enableCMB",
        "True",
    ),
    (
        "hostpath-0.4.json",
        with_node("0.4.0", hostPath="/dev/zero"),  # newer than cdiVersion
        "deviceNodes[0].hostPath",
        "needs cdiVersion 0.5.0",
    ),
    ("annot-0.5.json", spec("0.5.0", annotations={"a": "b"}), "annotations", "needs cdiVersion 0.6.0"),
    ("dot-class-0.5.json", spec("0.5.0", kind="cgdev.test/a.b"), "kind", "needs cdiVersion 0.6.0"),
    ("digit-0.4.json", spec("0.4.0", devices=[dev("0")]), "devices[0].name", "needs cdiVersion 0.5.0"),
    (
        "mounttype-0.3.json",
        spec(containerEdits={"mounts": [{"hostPath": "/a", "containerPath": "/b", "type": "bind"}]}),
        "containerEdits.mounts[0].type",
        "needs cdiVersion 0.4.0",
    ),
    (
        "rdt-0.6.json",
        spec("0.6.0", containerEdits={"intelRdt": {"closID": "x"}}),
        "containerEdits.intelRdt",
        "needs cdiVersion 0.7.0",
    ),
    (
        "gids-0.6.json",
        spec("0.6.0", containerEdits={"additionalGids": [5]}),
        "additionalGids",
        "needs cdiVersion 0.7.0",
    ),
    (
        "net-1.0.json",
        spec("1.0.0", containerEdits={"netDevices": [{"hostInterfaceName": "eth1", "name": "e"}]}),
        "containerEdits.netDevices",
        "needs cdiVersion 1.1.0",
    ),
    (
        "schemata-1.0.json",
        spec("1.0.0", containerEdits={"intelRdt": {"schemata": ["L3:0=f"]}}),
        "intelRdt.schemata",
        "needs cdiVersion 1.1.0",
    ),
    (
        "cmt-1.1.json",
        spec("1.1.0", containerEdits={"intelRdt": {"enableCMT": True}}),
        "intelRdt.enableCMT",
        "removed in cdiVersion 1.1.0",
    ),
    (
        "nopath.json",
        spec(devices=[dev("d", deviceNodes=[{"type": "c"}])]),
        "deviceNodes[0].path",
        "required field missing",
    ),  # missing path
    ("emptypath.json", with_node(path=""), "deviceNodes[0].path", "empty device path"),
    ("perms.json", with_node(permissions="rwx"), "deviceNodes[0].permissions", "rwx"),  # bad permissions
    ("perms-none2.json", with_node(permissions="nonE"), "deviceNodes[0].permissions", "nonE"),
    ("type.json", with_node(type="x"), "deviceNodes[0].type", "'x'"),
    ("version.json", spec("0.9.0"), "cdiVersion", "0.9.0"),
    ("version-patch.json", spec("0.5.1"), "cdiVersion", "0.5.1"),
    ("version-old.json", spec("0.2.0"), "cdiVersion", "0.2.0"),
    ("noversion.json", {k: v for k, v in spec().items() if k != "cdiVersion"}, "cdiVersion", "required"),
    ("nodevices.json", spec(devices=[]), "devices", "at least one device"),
    ("noedits.json", spec(devices=[{"name": "d"}]), "devices[0].containerEdits", "at least one edit"),
    ("dup-in-file.json", spec(devices=[dev("a"), dev("a")]), "devices[1].name", "duplicate of devices[0]"),
    (
        "hook.json",
        spec(containerEdits={"hooks": [{"hookName": "preStart", "path": "/x"}]}),
        "containerEdits.hooks[0].hookName",
        "preStart",
    ),
    (
        "hookpath.json",
        spec(containerEdits={"hooks": [{"hookName": "poststart", "path": ""}]}),
        "hooks[0].path",
        "empty hook path",
    ),
    ("env.json", spec(containerEdits={"env": ["=x"]}), "containerEdits.env[0]", "=x"),
    (
        "mount.json",
        spec(containerEdits={"mounts": [{"hostPath": "", "containerPath": "/b"}]}),
        "mounts[0].hostPath",
        "empty mount path",
    ),
    (
        "netdup.json",
        spec(
            "1.1.0",
            containerEdits={
                "netDevices": [
                    {"hostInterfaceName": "eth1", "name": "a"},
                    {"hostInterfaceName": "eth1", "name": "b"},
                ]
            },
        ),
        "netDevices[1].hostInterfaceName",
        "eth1",
    ),
    ("closid.json", spec("0.7.0", containerEdits={"intelRdt": {"closID": "a/b"}}), "intelRdt.closID", "a/b"),
    ("list.json", [1, 2], "(document)", "list"),
    ("empty.yaml", "", "empty.yaml", "empty spec file"),
    ("badjson.json", '{"cdiVersion": "0.3.0",,}', "line 1 column", "not JSON"),  # bad JSON / YAML
    ("badyaml.yaml", "cdiVersion: 0.3.0\nkind: [unclosed\n", "line", "not YAML"),
    ("dupkey.yaml", "cdiVersion: 0.3.0\nkind: a.b/c\nkind: a.b/d\n", "line 3", "duplicate key"),
    ("dupkey.json", '{"cdiVersion": "0.3.0", "cdiVersion": "0.4.0"}', "dupkey.json", "duplicate key"),
    (
        "yaml-type.yaml",
        "cdiVersion: 0.3.0\nkind: cgdev.test/x\ndevices:\n  - name: 5\n",
        "devices[0].name",
        "5",
    ),
]


def write(directory: Path, name: str, content: Any) -> Path:
    path = directory / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize(("name", "content", "field", "value"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_spec_is_one_line_naming_file_and_field(
    tmp_path: Path, name: str, content: Any, field: str, value: str | None
) -> None:
    path = write(tmp_path, name, content)
    registry = load_registry([str(tmp_path)])
    assert registry.devices == {}
    (err,) = registry.errors
    line = str(err)
    assert isinstance(err, InputError) and err.exit_code == 2
    assert "\n" not in line
    assert line.startswith(str(path)), line
    assert field in line, line
    if value is not None:
        assert value in line, line


def test_at_least_fifteen_malformed_kinds() -> None:
    assert len(MALFORMED) >= 15


@pytest.mark.parametrize("case", [MALFORMED[i] for i in (0, 5, 10, 13, 23, 25, 44, 46)], ids=lambda c: c[0])
def test_malformed_spec_through_the_cli(tmp_path: Path, case: tuple[str, Any, str, str | None]) -> None:
    name, content, field, _ = case
    path = write(tmp_path, name, content)
    write(tmp_path, "good.json", spec(kind="cgdev.test/good"))
    out = cli("list", "--spec-dir", str(tmp_path))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.splitlines()
    assert line.startswith(f"cgdev cdi: {path}") and field in line
    assert "cgdev.test/good=null" in out.stdout  # the other files are still read, as engines do


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cgdev", "cdi", *argv], capture_output=True, text=True, timeout=60
    )


def test_duplicate_device_across_files_same_dir_is_a_conflict(tmp_path: Path) -> None:
    a = write(tmp_path, "a.json", spec())
    b = write(tmp_path, "b.yaml", yaml.safe_dump(spec()))
    registry = load_registry([str(tmp_path)])
    assert "cgdev.test/null=null" not in registry.devices  # neither is used, as in the reference
    (err,) = registry.errors
    assert str(err).startswith(f"{b}: devices[0].name 'null'") and str(a) in str(err)
    out = cli("show", "cgdev.test/null=null", "--spec-dir", str(tmp_path))
    assert out.returncode == 2 and "no such CDI device" in out.stderr


def test_later_directory_overrides_earlier(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "run").mkdir()
    write(tmp_path / "etc", "a.json", spec())
    later = write(
        tmp_path / "run", "a.json", spec(devices=[dev("null", deviceNodes=[{"path": "/dev/zero"}])])
    )
    registry = load_registry([str(tmp_path / "etc"), str(tmp_path / "run")])
    assert registry.errors == ()
    entry = registry.devices["cgdev.test/null=null"]
    assert entry.loaded.path == str(later)
    assert entry.shadows == (str(tmp_path / "etc" / "a.json"),)
    res = resolve_cdi_names(["cgdev.test/null=null"], registry=registry)
    assert res.devices == (OciDevice("/dev/zero", "c", 1, 5, 0o666),)


FEATURES: dict[str, dict[str, Any]] = {
    # the smallest spec using what each version added (0.8.0 and 1.0.0 added no fields)
    "0.3.0": spec(),
    "0.4.0": spec(
        "0.4.0",
        containerEdits={
            "mounts": [{"hostPath": "/a", "containerPath": "/b", "type": "bind", "options": ["rbind"]}]
        },
    ),
    "0.5.0": spec("0.5.0", devices=[dev("0", deviceNodes=[{"path": "/dev/n", "hostPath": "/dev/null"}])]),
    "0.6.0": spec("0.6.0", kind="cgdev.test/a.b", annotations={"k": "v"}),
    "0.7.0": spec(
        "0.7.0", containerEdits={"additionalGids": [0, 44], "intelRdt": {"closID": "c", "enableCMT": True}}
    ),
    "1.1.0": spec(
        "1.1.0",
        containerEdits={
            "intelRdt": {"schemata": ["L3:0=f"], "enableMonitoring": True},
            "netDevices": [{"hostInterfaceName": "eth1", "name": "e1"}],
        },
    ),
}


@pytest.mark.parametrize("version", VERSIONS)
def test_valid_spec_of_every_version(tmp_path: Path, version: str) -> None:
    newest = max((v for v in FEATURES if VERSIONS.index(v) <= VERSIONS.index(version)), key=VERSIONS.index)
    document = dict(FEATURES[newest], cdiVersion=version)
    path = write(tmp_path, "s.yaml", yaml.safe_dump(document))
    registry = load_registry([str(tmp_path)])
    assert registry.errors == (), registry.errors
    (entry,) = registry.devices.values()
    assert entry.loaded.path == str(path)
    assert minimum_version(entry.loaded.spec) == newest
    # one version lower than what the spec uses is refused, naming the field
    if newest != "0.3.0":
        lower = VERSIONS[VERSIONS.index(newest) - 1]
        with pytest.raises(InputError, match="needs cdiVersion " + newest):
            parse_spec(dict(document, cdiVersion=lower), "s")


def test_v_prefix_and_null_values_read_as_the_reference() -> None:
    document = spec("v0.6.0", annotations=None)
    document["devices"][0]["containerEdits"]["env"] = None  # YAML's empty "env:"
    parsed = parse_spec(document, "s")
    assert parsed.cdi_version == "v0.6.0" and parsed.devices[0].container_edits.env == []


# --- hypothesis: valid specs round-trip through JSON and YAML, and minimum_version is exact ---------

NAME = st.from_regex(r"[A-Za-z]([A-Za-z0-9_.-]{0,8}[A-Za-z0-9])?", fullmatch=True)
DEVNAME = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9_.:-]{0,8}[A-Za-z0-9])?", fullmatch=True)
PATH = st.from_regex(r"/dev/[a-z0-9]{1,8}", fullmatch=True)
NODES = st.builds(
    dict,
    path=PATH,
    hostPath=st.sampled_from(["", "/dev/null"]),
    type=st.sampled_from(["", "b", "c", "u", "p"]),
    major=st.integers(0, 4095),
    minor=st.integers(0, 2**20 - 1),
    permissions=st.sampled_from(["", "none", "r", "rw", "rwm", "mr", "w"]),
    uid=st.none() | st.integers(0, 2**32 - 1),
)
EDITS = st.builds(
    dict,
    env=st.lists(st.from_regex(r"[A-Z]{1,4}=[a-z]{0,4}", fullmatch=True), max_size=2),
    deviceNodes=st.lists(NODES, min_size=1, max_size=3),
    additionalGids=st.lists(st.integers(0, 100), max_size=2),
    mounts=st.lists(
        st.builds(dict, hostPath=PATH, containerPath=PATH, type=st.sampled_from(["", "bind"])), max_size=1
    ),
)


def _clean(value: Any) -> Any:
    """Drop zero values: what a writer omits (the reference writes omitempty)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v not in ("", 0, None, [], {})}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(DEVNAME, min_size=1, max_size=3, unique=True))
    devices = [{"name": n, "containerEdits": _clean(draw(EDITS))} for n in names]
    document = {"cdiVersion": "1.1.0", "kind": f"{draw(NAME)}/{draw(NAME)}", "devices": devices}
    if draw(st.booleans()):
        document["annotations"] = {"a": draw(NAME)}
    return document


@settings(max_examples=150, deadline=None)
@given(specs())
def test_round_trip_and_minimum_version(document: dict[str, Any]) -> None:
    parsed = parse_spec(document, "gen")
    assert json.loads(encode_spec(parsed)) == document
    assert parse_spec(yaml.safe_load(yaml.safe_dump(document)), "gen") == parsed
    needed = minimum_version(parsed)
    assert parse_spec(dict(document, cdiVersion=needed), "gen").cdi_version == needed
    if needed != VERSIONS[0]:
        with pytest.raises(InputError, match="needs cdiVersion"):
            parse_spec(dict(document, cdiVersion=VERSIONS[VERSIONS.index(needed) - 1]), "gen")


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("vendor.com/gpu=0", True),
        ("v/c=a:b", True),
        ("nvidia.com/gpu=all", True),
        ("V_1/c-2=x.y", True),
        ("/dev/null", False),
        ("vendor/gpu", False),
        ("vendor=x", False),
        ("1v/c=x", False),
        ("v/c=", False),
        ("v/c=x!", False),
        ("v/c.=x", False),
        ("v/=x", False),
    ],
)
def test_qualified_names(name: str, ok: bool) -> None:
    assert is_qualified_name(name) is ok


# --- resolution against real host nodes -----------------------------------------------------------


def test_resolution_fills_numbers_from_dev_null(tmp_path: Path) -> None:
    write(
        tmp_path,
        "n.json",
        spec(
            "0.5.0",
            devices=[
                dev("null", deviceNodes=[{"path": "/dev/null"}]),
                dev("ro", deviceNodes=[{"path": "/dev/zero", "permissions": "r"}], env=["A=1"]),
                dev("none", deviceNodes=[{"path": "/dev/full", "permissions": "none"}]),
                dev(
                    "fixed",
                    deviceNodes=[
                        {"path": "/dev/fake", "type": "c", "major": 240, "minor": 7, "fileMode": 0o600}
                    ],
                ),
            ],
            containerEdits={"env": ["SPEC=1"]},
        ),
    )
    names = ["cgdev.test/null=null", "cgdev.test/null=ro", "cgdev.test/null=none", "cgdev.test/null=fixed"]
    res = resolve_cdi_names(names, [str(tmp_path)])
    st_null = os.stat("/dev/null")
    assert (os.major(st_null.st_rdev), os.minor(st_null.st_rdev)) == (1, 3)
    assert res.devices == (
        OciDevice("/dev/null", "c", 1, 3, stat.S_IMODE(st_null.st_mode)),
        OciDevice("/dev/zero", "c", 1, 5, stat.S_IMODE(os.stat("/dev/zero").st_mode)),
        OciDevice("/dev/full", "c", 1, 7, stat.S_IMODE(os.stat("/dev/full").st_mode)),
        OciDevice("/dev/fake", "c", 240, 7, 0o600),  # minimally specified: no host node needed
    )
    assert res.device_rules == (
        OciDeviceRule(True, "c", 1, 3, "rwm"),
        OciDeviceRule(True, "c", 1, 5, "r"),
        OciDeviceRule(True, "c", 1, 7, ""),
        OciDeviceRule(True, "c", 240, 7, "rwm"),
    )
    assert res.rules()[2] == Rule(True, "c", 1, 7, 0)
    assert res.env == ("SPEC=1", "A=1")  # spec-level edits once, first


@pytest.fixture
def nodes(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        skip_unless_ci("needs root to mknod device nodes")
    d = tmp_path / "nodes"
    d.mkdir()
    os.mknod(d / "nvidiactl", 0o660 | stat.S_IFCHR, os.makedev(195, 255))
    os.mknod(d / "disk", 0o640 | stat.S_IFBLK, os.makedev(8, 250))
    os.mkfifo(d / "fifo")
    os.chmod(d / "nvidiactl", 0o660)  # whatever the umask
    os.chmod(d / "disk", 0o640)
    (d / "link").symlink_to(d / "nvidiactl")
    return d


def test_resolution_from_mknod_nodes(tmp_path: Path, nodes: Path) -> None:
    specs_dir = tmp_path / "cdi"
    specs_dir.mkdir()
    write(
        specs_dir,
        "n.yaml",
        yaml.safe_dump(
            spec(
                "0.5.0",
                kind="fake.nvidia.com/gpu",
                devices=[
                    dev(
                        "ctl",
                        deviceNodes=[
                            {
                                "path": "/dev/nvidiactl",
                                "hostPath": str(nodes / "nvidiactl"),
                                "permissions": "rw",
                            }
                        ],
                    ),
                    dev(
                        "disk",
                        deviceNodes=[{"path": "/dev/sdz", "hostPath": str(nodes / "disk"), "major": 8}],
                    ),
                    dev("fifo", deviceNodes=[{"path": "/run/f", "hostPath": str(nodes / "fifo")}]),
                    dev("link", deviceNodes=[{"path": "/dev/l", "hostPath": str(nodes / "link")}]),
                    dev(
                        "wrongtype",
                        deviceNodes=[{"path": "/dev/w", "hostPath": str(nodes / "nvidiactl"), "type": "b"}],
                    ),
                    dev("absent", deviceNodes=[{"path": "/dev/absent", "hostPath": str(nodes / "absent")}]),
                ],
            )
        ),
    )
    d = [str(specs_dir)]
    ctl = resolve_cdi_names(["fake.nvidia.com/gpu=ctl"], d)
    assert ctl.devices == (OciDevice("/dev/nvidiactl", "c", 195, 255, 0o660),)
    assert ctl.device_rules == (OciDeviceRule(True, "c", 195, 255, "rw"),)
    # a type missing, a major given: the type comes from the host, the given numbers stay
    disk = resolve_cdi_names(["fake.nvidia.com/gpu=disk"], d)
    assert disk.devices == (OciDevice("/dev/sdz", "b", 8, 0, 0o640),)
    fifo = resolve_cdi_names(["fake.nvidia.com/gpu=fifo"], d)
    assert fifo.devices[0].type == "p" and fifo.device_rules == ()  # no cgroup rule for a fifo
    with pytest.raises(EnvError, match="no device node on the host") as err:  # lstat: a symlink is no node
        resolve_cdi_names(["fake.nvidia.com/gpu=link"], d)
    assert "devices[3].containerEdits.deviceNodes[0].hostPath" in str(err.value)
    with pytest.raises(InputError, match="is of type c") as err2:
        resolve_cdi_names(["fake.nvidia.com/gpu=wrongtype"], d)
    assert "deviceNodes[0].type 'b'" in str(err2.value)
    out = cli("show", "fake.nvidia.com/gpu=absent", "--spec-dir", str(specs_dir))
    assert out.returncode == 3 and "absent" in out.stderr and "Traceback" not in out.stderr
    assert host_node(str(nodes / "nvidiactl")) is not None


def test_all_is_only_a_device_the_spec_defines(tmp_path: Path) -> None:
    write(tmp_path, "a.json", spec(devices=[dev("a"), dev("b", deviceNodes=[{"path": "/dev/zero"}])]))
    with pytest.raises(NotFound):
        resolve_cdi_names(["cgdev.test/null=all"], [str(tmp_path)])
    write(tmp_path, "b.json", spec(kind="cgdev.test/other", devices=[dev("all")]))
    assert resolve_cdi_names(["cgdev.test/other=all"], [str(tmp_path)]).devices[0].path == "/dev/null"


def test_cli_show_and_list(tmp_path: Path) -> None:
    write(
        tmp_path, "a.json", spec(devices=[dev("a", deviceNodes=[{"path": "/dev/null", "permissions": "rw"}])])
    )
    out = cli("show", "cgdev.test/null=a", "--spec-dir", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["linux"]["resources"]["devices"] == [
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}
    ]
    human = cli("show", "cgdev.test/null=a", "--spec-dir", str(tmp_path))
    assert "allow c 1:3 rw" in human.stdout
    listed = json.loads(cli("list", "--spec-dir", str(tmp_path), "--json").stdout)
    assert set(listed) == {"dirs", "devices", "errors"}  # as docs/json-schema.md says
    (entry,) = listed["devices"]
    assert set(entry) == {"name", "spec", "cdiVersion", "deviceNodes", "shadows"}
    assert entry["name"] == "cgdev.test/null=a"
    assert entry["deviceNodes"] == [{"path": "/dev/null", "permissions": "rw"}]
    assert set(doc) == {"names", "specs", "linux", "env", "mounts", "hooks", "additionalGids"}
    bad = cli("show", "not-a-name", "--spec-dir", str(tmp_path))
    # the argument as cdi show spells it (NAME): it said "--device", a flag cdi show does not have
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "NAME 'not-a-name'" in bad.stderr
    missing = cli("show", "cgdev.test/null=b", "--spec-dir", str(tmp_path))
    assert missing.returncode == 2 and "NAME 'cgdev.test/null=b': no such CDI device" in missing.stderr
    assert "--device" not in bad.stderr + missing.stderr


def test_spec_struct_is_the_one_parse_returns() -> None:
    assert isinstance(parse_spec(spec(), "s"), CdiSpec)


def test_yaml_is_imported_only_for_yaml_files(tmp_path: Path) -> None:
    """The OCI hook resolves names at every container start: JSON-only nodes must not pay for yaml."""
    write(tmp_path, "a.json", spec())
    code = (
        "import sys; from cgdev.ops.cdi_names import resolve_cdi_names; "
        f"resolve_cdi_names(['cgdev.test/null=null'], [{str(tmp_path)!r}]); "
        "print('yaml' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
    write(tmp_path, "b.yaml", yaml.safe_dump(spec(kind="cgdev.test/y")))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True", out.stderr

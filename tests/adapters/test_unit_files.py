"""adapters.unit_files: what a daemon-reload loads from a unit's fragment and drop-ins.

Real files in a temporary tree laid out as systemd's (/run/systemd/transient, system.control);
the comparison with a real systemd's reload is tests/lab/test_lab_unit_files.py.
"""

from __future__ import annotations

from pathlib import Path

from cgdev.adapters.unit_files import apply_unit_text, normal_access, read_unit_devices
from cgdev.ops.layers import UnitRecord

UNIT = "runc-x.scope"


def _write(root: Path, path: str, text: str) -> str:
    full = root / path.lstrip("/")
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_text(text)
    return path


def test_empty_device_allow_resets_and_access_is_normalised() -> None:
    allow: list[tuple[str, str]] = [("/dev/null", "rw")]
    text = "[Scope]\n# a comment\nDeviceAllow=\nDeviceAllow=char-pts rwm\nDeviceAllow=/dev/char/1:3 wr\n"
    text += "DeviceAllow=/dev/zero\nDevicePolicy=strict\n"
    assert apply_unit_text(text, "auto", allow) == "strict"
    assert allow == [("char-pts", "rwm"), ("/dev/char/1:3", "rw"), ("/dev/zero", "rwm")]
    assert normal_access("mr") == "rm"


def test_runc_scope_files_give_the_loaded_settings(tmp_path: Path) -> None:
    """runc's order (DevicePolicy written before DeviceAllow) leaves NeedDaemonReload=yes with
    drop-ins that hold exactly the loaded values: a reload changes nothing for devices."""
    fragment = _write(tmp_path, f"/run/systemd/transient/{UNIT}", "[Scope]\nDelegate=yes\n")
    d = f"/run/systemd/transient/{UNIT}.d"
    listed = [
        _write(tmp_path, f"{d}/50-DevicePolicy.conf", "[Scope]\nDevicePolicy=strict\n"),
        _write(
            tmp_path, f"{d}/50-DeviceAllow.conf", "[Scope]\nDeviceAllow=\nDeviceAllow=/dev/char/1:3 rwm\n"
        ),
    ]
    disk = read_unit_devices(str(tmp_path), UNIT, fragment, listed)
    assert disk is not None and disk.device_policy == "strict"
    assert disk.device_allow == (("/dev/char/1:3", "rwm"),)
    loaded = UnitRecord(UNIT, device_policy="strict", device_allow=(("/dev/char/1:3", "rwm"),),
                        need_daemon_reload=True, on_disk=disk)  # fmt: skip
    assert loaded.reload_keeps_devices
    # a drop-in written since the load (not in DropInPaths) in a higher-priority directory counts
    _write(tmp_path, f"/run/systemd/system.control/{UNIT}.d/60-x.conf", "DeviceAllow=/dev/char/195:255 rw\n")
    disk = read_unit_devices(str(tmp_path), UNIT, fragment, listed)
    assert disk is not None and disk.device_allow[-1] == ("/dev/char/195:255", "rw")
    changed = UnitRecord(UNIT, device_policy="strict", device_allow=(("/dev/char/1:3", "rwm"),),
                         need_daemon_reload=True, on_disk=disk)  # fmt: skip
    assert not changed.reload_keeps_devices
    # unreadable state is unknown, never "unchanged"
    assert not UnitRecord(UNIT, need_daemon_reload=True).reload_keeps_devices
    assert read_unit_devices(str(tmp_path), UNIT, "/run/systemd/transient/gone.scope", []) is None

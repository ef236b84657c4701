"""Issue 8 item 5 in the lab: the after-reload prediction for units with NeedDaemonReload=yes.

Every runc scope shows NeedDaemonReload=yes (runc writes DevicePolicy before DeviceAllow), with
drop-ins on disk that hold exactly the loaded values: the prediction must be exact and carry no
need-daemon-reload finding.  A drop-in that really changes DeviceAllow must be predicted from
the files.  Both predictions are checked against the lab's real systemd and a real
daemon-reload, with the kernel's verdict (a probe in the container's cgroup).
"""

from __future__ import annotations

import json
import os

import pytest
from test_lab_repair import Lab
from test_lab_spec_devices import GPU, runc_with_gpu_in_spec

from cgdev.adapters.kernel_probe import kernel_verdicts
from cgdev.lab import scenario
from fixtures_lab import LabHandle

pytestmark = pytest.mark.lab


@pytest.fixture(autouse=True)
def state_dir(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CGDEV_STATE_DIR", str(tmp_path))


def _explain(view: Lab, container_id: str) -> dict[str, object]:
    done = view.cgdev("explain", container_id, "--device", "c 195:255", "--json")
    assert done.returncode in (0, 1), done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_need_daemon_reload_prediction_is_read_from_the_unit_files(lab: LabHandle) -> None:
    view = Lab(lab)
    with runc_with_gpu_in_spec(lab, "r2-nr-t") as container:
        report = _explain(view, container.id)
        codes = [f["code"] for f in report["findings"]]  # type: ignore[index, union-attr]
        assert "need-daemon-reload" not in codes, codes  # the files hold the loaded values
        after = report["after_reload"]
        assert after["allowed"] is False  # type: ignore[index]
        assert not any("set-property only" in n for n in after["notes"])  # type: ignore[index]
        scenario.apply_step(lab.running, "daemon-reload", container)
        assert kernel_verdicts(view.host_cgroup(container), [GPU]) == [False]  # came true

        # a drop-in edited on disk (its mtime makes systemd say NeedDaemonReload=yes) that does
        # change the devices: the prediction must come from the files
        transient = f"/proc/{lab.pid1}/root/run/systemd/transient/{container.scope}.d"
        dropin = os.path.join(transient, sorted(n for n in os.listdir(transient) if "DeviceAllow" in n)[-1])
        with open(dropin) as fh:
            saved = fh.read()
        try:
            with open(dropin, "a") as fh:
                fh.write("DeviceAllow=/dev/char/195:255 rw\n")
            report = _explain(view, container.id)
            found = [f for f in report["findings"] if f["code"] == "need-daemon-reload"]  # type: ignore[union-attr, index]
            assert found and "uses the files" in found[0]["message"], report["findings"]
            assert report["after_reload"]["allowed"] is True  # type: ignore[index]
            scenario.apply_step(lab.running, "daemon-reload", container)
            assert kernel_verdicts(view.host_cgroup(container), [GPU]) == [True]  # came true
        finally:
            with open(dropin, "w") as fh:
                fh.write(saved)
            scenario.apply_step(lab.running, "daemon-reload", container)

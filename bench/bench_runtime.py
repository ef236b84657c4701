"""Benchmark: the wrapper runtime's overhead on ``create`` (issue 9: target <= 2.5x ``python3 -c pass``).

An engine runs its runtime binary for every step of every container, so the wrapper's cost is a
whole process: the interpreter's start-up, the imports, reading config.json, and the exec.  Measured
in one run, medians of whole processes, all against ``python3 -c pass``:

- the exec target alone (``/bin/true``): what any process costs here;
- ``cgdev-runtime state ID`` (a plain exec), ``create`` of a bundle with no claim, ``create`` with a
  CDI claim (the spec rewritten each time: config.json restored before every run), each exec'ing
  ``/bin/true``: the wrapper's overhead is the difference to ``/bin/true`` alone.  The CDI claim
  twice: from the cache of the validated registry (``adapters.cdi_cache``, the usual case), and
  cold (the cache removed before each run: the full msgspec reader, which writes it again);
- when the cgdev lab runs (never started here): a real ``crun create`` (systemd driver) of a lab
  container, bare and through the wrapper, the container deleted after each (untimed).

Then the import time (``-X importtime``, self times summed) of the create paths, and the slowest
modules.  Bytecode is cached (in a temporary ``PYTHONPYCACHEPREFIX``), as for an installed
package.  ``python bench/bench_runtime.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from timing import median_wall_cpu_ms

SRC = Path(__file__).resolve().parents[1] / "src"
SPEC = {
    "cdiVersion": "0.5.0",
    "kind": "example.com/gpu",
    "devices": [
        {
            "name": "ctl",
            "containerEdits": {
                "deviceNodes": [
                    {"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255, "permissions": "rw"}
                ]
            },
        }
    ],
}
LAUNCHER = "from cgdev.runtime_wrapper.entry import entry\n\nentry()\n"  # as the cgdev-runtime executable


def run(argv: list[str], env: dict[str, str]) -> None:
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)


def config(annotations: dict[str, str]) -> bytes:
    """A podman-sized config.json (env, mounts, a dozen rules) with ``annotations``."""
    doc = {
        "ociVersion": "1.0.2",
        "annotations": annotations,
        "process": {
            "args": ["sh"],
            "env": [f"VAR{i}=value{i}" for i in range(20)],
            "user": {"uid": 0, "gid": 0},
        },
        "mounts": [{"destination": f"/m{i}", "type": "bind", "source": f"/s{i}"} for i in range(12)],
        "linux": {
            "devices": [],
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}]
                + [
                    {"allow": True, "type": "c", "major": 1, "minor": m, "access": "rwm"}
                    for m in (3, 5, 7, 8, 9)
                ]
            },
        },
    }
    return json.dumps(doc, indent=1).encode()


def import_ms(argv: list[str], env: dict[str, str]) -> tuple[float, list[tuple[str, float]]]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, env=env
    )
    rows = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            self_us, _, name = line.removeprefix("import time:").split("|")
            rows.append((name.strip(), int(self_us) / 1000))
    return sum(ms for _, ms in rows), sorted(rows, key=lambda r: -r[1])[:4]


def lab_rows(rounds: int, base: Path) -> list[tuple[str, float]]:
    """A real ``crun create`` in the running lab, bare and through the wrapper (none if no lab)."""
    try:
        from cgdev.lab import bundle, install, runtime
        from cgdev.lab.instance import find_lab
    except ImportError:
        return []
    lab = find_lab()
    rt = install.installed_runtimes().get("crun") if lab is not None else None
    if lab is None or rt is None:
        print("(the lab is not running: no real create measured)\n")
        return []
    launcher = base / "cgdev-runtime.sh"
    launcher.write_text(
        f"#!/bin/sh\nexport PYTHONPATH={SRC} PYTHONPYCACHEPREFIX={base / 'pycache'}\n"
        f"exec {sys.executable} {base / 'launcher.py'} "
        f'--runtime-path {rt.path} --policy /nonexistent "$@"\n'
    )
    launcher.chmod(0o755)
    rows = []
    for label, path in ((f"crun {rt.version} create (lab, systemd), bare", rt.path),
                        (f"crun {rt.version} create through cgdev-runtime", str(launcher))):  # fmt: skip
        wrapped = runtime.Runtime(rt.name, path, rt.version, rt.env)
        samples = []
        for i in range(rounds):
            cid = f"bench-rtw-{i}"
            cfg = bundle.base_config(bundle.ensure_rootfs())
            cfg["linux"]["cgroupsPath"] = runtime.cgroups_path(wrapped, "systemd", cid)
            where = bundle.write_bundle(cid, cfg)
            try:
                with (where / "runtime.log").open("w") as out:
                    start = time.perf_counter()
                    lab.exec([*wrapped.argv("systemd"), "create", "--bundle", str(where), cid],
                             check=True, stdout=out, stderr=out)  # fmt: skip
                    samples.append((time.perf_counter() - start) * 1000)
            finally:
                runtime.delete(lab, rt, "systemd", cid)
                bundle.remove_bundle(cid)
        samples.sort()
        rows.append((label, samples[len(samples) // 2]))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=31)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    try:
        return _measure(base, args.rounds)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _measure(base: Path, rounds: int) -> int:
    (base / "launcher.py").write_text(LAUNCHER)
    (base / "cdi").mkdir()
    (base / "cdi" / "gpu.json").write_text(json.dumps(SPEC))
    plain = base / "bundles" / "plain"
    claim = base / "bundles" / "claim"
    for path, claims in ((plain, {"io.podman.annotations.autoremove": "FALSE"}),
                         (claim, {"cdi.k8s.io/gpu": "example.com/gpu=ctl"})):  # fmt: skip
        path.mkdir(parents=True)
        (path / "config.json").write_bytes(config(claims))
    original = (claim / "config.json").read_bytes()
    # Bytecode cached, as an installed package has it, but outside the source tree.
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONPYCACHEPREFIX": str(base / "pycache")}
    env["CGDEV_STATE_DIR"] = str(base / "state")
    cache = base / "state" / "cdi-cache.json"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    options = ["--runtime-path", "/bin/true", "--policy", str(base / "none.yaml"),
               "--cdi-dir", str(base / "cdi"), "--bundle-dir", str(base / "bundles")]  # fmt: skip
    wrapper = [sys.executable, str(base / "launcher.py"), *options]

    def claimed() -> None:
        (claim / ".restore").write_bytes(original)
        os.replace(claim / ".restore", claim / "config.json")
        run([*wrapper, "create", "--bundle", str(claim), "c1"], env)

    def claimed_cold() -> None:
        cache.unlink(missing_ok=True)
        claimed()

    def timed(action: Callable[[], None]) -> tuple[float, float]:
        return median_wall_cpu_ms(action, rounds, 2)

    create_plain = [*wrapper, "create", "--bundle", str(plain), "c1"]
    rows = [
        ("python3 -c pass", *timed(lambda: run([sys.executable, "-c", "pass"], env))),
        ("/bin/true (the exec target alone)", *timed(lambda: run(["/bin/true"], env))),
        ("cgdev-runtime state (plain exec)", *timed(lambda: run([*wrapper, "state", "c1"], env))),
        ("cgdev-runtime create, no claim", *timed(lambda: run(create_plain, env))),
        ("cgdev-runtime create, CDI claim, cold (full reader)", *timed(claimed_cold)),
    ]
    # The cache never holds a spec file changed in the last 2 s (adapters.cdi_cache): wait that out.
    time.sleep(max(0.0, (base / "cdi" / "gpu.json").stat().st_ctime + 2.1 - time.time()))
    claimed()
    assert cache.exists(), "the full reader wrote no cache"
    rows.append(("cgdev-runtime create, CDI claim, cached (spec rewritten)", *timed(claimed)))
    assert json.loads((claim / "config.json").read_bytes())["linux"]["devices"], "the claim was not injected"
    (_, py, py_cpu), (_, true, true_cpu) = rows[0], rows[1]
    print("## cgdev-runtime: overhead on create\n")
    print(f"Medians of {rounds} whole processes, wall and CPU (user + system: on a loaded machine the")
    print("wall time of a short process is mostly waiting for a core); the wrapper execs /bin/true;")
    print("overhead = the wrapper's time - /bin/true's.\n")
    print("| what | ms | overhead ms | overhead vs. `python3 -c pass` | CPU ms | CPU overhead vs. the same |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, ms, cpu in rows:
        wrapped = name.startswith("cgdev")
        over = f"{ms - true:.2f} | {(ms - true) / py:.2f}x" if wrapped else "| "
        cpu_over = f"{(cpu - true_cpu) / py_cpu:.2f}x" if wrapped else ""
        print(f"| {name} | {ms:.2f} | {over} | {cpu:.1f} | {cpu_over} |")
    real = lab_rows(max(5, rounds // 3), base)
    if real:
        print("\n| real create in the lab | ms |\n|---|---:|")
        for name, ms in real:
            print(f"| {name} | {ms:.1f} |")
        print(f"\nWrapper overhead on a real create: {real[1][1] - real[0][1]:.1f} ms "
              f"({(real[1][1] - real[0][1]) / py:.2f}x `python3 -c pass`).")  # fmt: skip
    launcher = str(base / "launcher.py")
    for label, bundle in (("create, no claim", plain), ("create, CDI claim (cached)", claim)):
        (claim / ".restore").write_bytes(original)
        os.replace(claim / ".restore", claim / "config.json")
        argv = [launcher, *options, "create", "-b", str(bundle), "c"]
        total, slowest = import_ms(argv, env)
        print(f"\nImports of {label} (`-X importtime`, self times summed): {total:.1f} ms; slowest: "
              + ", ".join(f"`{n}` {ms:.1f} ms" for n, ms in slowest) + ".")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Real container engines in the lab: start a podman or containerd container, find it, probe it, remove it.

The lab's own containers (``containers``) are crun/runc driven by the lab; these are started by
the engines users run, against the lab's systemd, so that what an engine adds (podman's devices
and CDI, hooks from ``--hooks-dir``, containerd's shim calling ``--runc-binary``) is part of what
is tested.  The runtime is one of the lab's (``crun``, ``runc``, ``crun-1.8.1``) or any binary
path (as the lab sees it), e.g. a wrapper runtime that rewrites the bundle and execs the real one.

Every start and remove holds the lab lock (never while ``down`` runs); ``down`` removes every
engine container before it stops the lab (``remove_all``), and everything the engines wrote is in
the lab's private /run, which goes with the lab.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from cgdev.errors import CgdevError, EnvError, InputError, NotFound
from cgdev.lab import bundle, containerd, podman
from cgdev.lab import engine_record as records
from cgdev.lab.engine_record import ENGINES_DIR_IN_LAB, Engine, EngineContainer
from cgdev.lab.instance import Lab
from cgdev.lab.lock import lab_lock
from cgdev.lab.paths import current_stack, lab_timeout

__all__ = [
    "Engine",
    "EngineContainer",
    "engine_containers",
    "exec_in",
    "find_engine_container",
    "probe",
    "remove_all",
    "remove_engine_container",
    "run_engine_container",
]

WRAPPERS_DIR_IN_LAB: Final = f"{ENGINES_DIR_IN_LAB}/bin"
ENGINE_ROOTFS: Final = "engine-rootfs"  # in the stack's var dir: the engines' own busybox copy


def engine_containers() -> list[EngineContainer]:
    """The engine containers the current stack's lab has records of."""
    return records.load_all()


def find_engine_container(name: str) -> EngineContainer:
    """The record of ``name`` (a name, an id, or a podman id prefix of >= 12 characters)."""
    found = records.find(name)
    if found is None:
        raise NotFound(f"container {name!r} is not an engine container of the lab (see `cgdev lab status`)")
    return found


def run_engine_container(
    lab: Lab,
    engine: Engine | str,
    name: str,
    *,
    runtime: str = "crun",
    driver: str = "systemd",
    devices: Sequence[str] = (),
    annotations: Mapping[str, str] | None = None,
    hooks_dir: str | None = None,
    args: Sequence[str] = tuple(bundle.SLEEP_FOREVER),
    timeout: float | None = None,
) -> EngineContainer:
    """Start ``name`` with ``engine`` (replacing a container of that name) and return its record.

    ``runtime``: a lab runtime name, or an absolute path of a runtime binary inside the lab.
    ``devices``: podman ``--device`` specs (a path, ``src:dst:perms``, or a CDI name) or, for
    containerd, device paths.  ``hooks_dir``: podman's ``--hooks-dir`` (containerd has none).
    Input is checked before anything runs; an engine that fails is an ``EnvError`` with its
    last line of stderr.
    """
    from cgdev.lab.runtime import check_driver

    chosen = engine if isinstance(engine, Engine) else records.check_engine(engine)
    records.check_name(chosen, name)
    check_driver(driver)
    checked_devices = [records.check_device(chosen, d) for d in devices]
    checked_annotations = dict(annotations or {})
    for key, value in checked_annotations.items():
        records.check_annotation(f"{key}={value}")
    records.check_hooks_dir(chosen, hooks_dir)
    if not args:
        raise InputError("the container's command is empty")
    limit = lab_timeout() if timeout is None else timeout
    from cgdev.lab.containers import require_same_lab

    with lab_lock(limit):
        require_same_lab(lab)
        from cgdev.lab.engine_packages import ensure_engine

        ensure_engine(lab, chosen, limit)
        label, runtime_path = _runtime(lab, runtime)
        rootfs = str(_engine_rootfs())
        old = records.find(name)
        if old is not None and old.name == name:
            _remove(lab, old, limit)
        if chosen is Engine.PODMAN:
            base = podman.global_flags(runtime_path, driver, hooks_dir)
            version = podman.version(lab)
            run = podman.run_argv(base, name, rootfs, devices=checked_devices,
                                  annotations=checked_annotations, args=args,
                                  podman_version=version)  # fmt: skip
            container_id, pid, bundle_dir = podman.start(lab, base, run, limit)
            scope = f"libpod-{container_id}.scope"
        else:
            containerd.ensure_daemon(lab, limit)
            if name in containerd.listed(lab):  # a leftover of that name (no record of it)
                containerd.remove(lab, name, limit)
            run = containerd.run_argv(name, rootfs, runtime_path, driver, devices=checked_devices,
                                      annotations=checked_annotations, args=args)  # fmt: skip
            container_id, pid, bundle_dir = containerd.start(lab, run, name, limit)
            scope = f"cri-containerd-{name}.scope"
            version = containerd.version(lab)
        from cgdev.lab.runtime import lab_process_cgroup

        record = EngineContainer(
            engine=chosen,
            name=name,
            id=container_id,
            runtime=label,
            runtime_path=runtime_path,
            driver=driver,
            pid=pid,
            cgroup=lab_process_cgroup(lab, pid),
            scope=scope if driver == "systemd" else None,
            bundle=bundle_dir,
            annotations=checked_annotations,
            devices=checked_devices,
            hooks_dir=hooks_dir,
            engine_version=version,
        )
        records.save(record, lab.state)
        return record


def remove_engine_container(lab: Lab, name: str, *, timeout: float | None = None) -> None:
    """Remove an engine container and its record, under the lab lock."""
    limit = lab_timeout() if timeout is None else timeout
    from cgdev.lab.containers import require_same_lab

    with lab_lock(limit):
        record = find_engine_container(name)
        require_same_lab(lab)
        _remove(lab, record, limit)


def _remove(lab: Lab, record: EngineContainer, timeout: float) -> None:
    if record.engine is Engine.PODMAN:
        podman.remove(lab, podman.global_flags(record.runtime_path, record.driver, record.hooks_dir),
                      record.name, timeout)  # fmt: skip
    else:
        containerd.remove(lab, record.name, timeout)
    records.forget(record.name, lab.state)


def remove_all(lab: Lab, errors: list[str], timeout: float = 20) -> list[str]:
    """Remove every recorded engine container (``down``, holding the lab lock); returns their names.

    A container that will not go never stops ``down``: its one-line message goes to ``errors``
    (stopping the lab kills it anyway).
    """
    removed = []
    for record in records.load_all(lab.state):
        try:
            _remove(lab, record, timeout)
        except CgdevError as exc:
            errors.append(f"{record.engine.value} {record.name}: {exc}")
        else:
            removed.append(record.name)
    return removed


def exec_in(
    lab: Lab, record: EngineContainer, argv: Sequence[str], timeout: float = 15
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside the container through its engine (``podman exec``, ``ctr task exec``)."""
    if record.engine is Engine.PODMAN:
        base = podman.global_flags(record.runtime_path, record.driver, record.hooks_dir)
        command = podman.exec_argv(base, record.name, argv)
    else:
        command = containerd.exec_argv(record.name, f"cgdev-{os.getpid()}-{id(argv)}", argv)
    return lab.exec(command, check=False, timeout=timeout)


def probe(lab: Lab, record: EngineContainer, nodes: Sequence[str] = bundle.PROBE_NODES) -> dict[str, str]:
    """Open ``/dev/<node>`` read-write inside the container: ``{node: ok|EPERM|ENXIO|ENOENT|other}``.

    The same probe as the lab's own containers (``runtime.PROBE_SCRIPT``), run by the engine.
    """
    from cgdev.lab.runtime import PROBE_SCRIPT, parse_probe

    done = exec_in(lab, record, ["sh", "-c", PROBE_SCRIPT, "probe", *nodes])
    return parse_probe(done, tuple(nodes), record.name)


def _runtime(lab: Lab, runtime: str) -> tuple[str, str]:
    """(label, path in the lab) of a lab runtime name or a binary path.

    A lab runtime that needs an environment (crun 1.8.1's memlock shim) gets a two-line wrapper
    in the lab's /run: the engines start runtimes with their own environment, not ours.
    """
    if runtime.startswith("/"):
        if lab.exec(["test", "-x", runtime], check=False, timeout=10).returncode != 0:
            raise InputError(f"--runtime {runtime!r}: not an executable file inside the lab")
        return os.path.basename(runtime), runtime
    from cgdev.lab.containers import runtime_named

    rt = runtime_named(runtime)
    if not rt.env:
        return rt.name, rt.path
    wrapper = f"{WRAPPERS_DIR_IN_LAB}/{rt.name}"
    exports = " ".join(f"{k}={v}" for k, v in rt.env)
    script = f'#!/bin/sh\nexec env {exports} {rt.path} "$@"\n'
    lab.exec(["sh", "-c", f"mkdir -p {WRAPPERS_DIR_IN_LAB} && cat > {wrapper} && chmod 755 {wrapper}"],
             input=script, timeout=10)  # fmt: skip
    return rt.name, wrapper


def _engine_rootfs() -> Path:
    """A private copy of the lab's busybox rootfs: podman creates mount targets in its rootfs."""
    target = current_stack().var_dir / ENGINE_ROOTFS
    if (target / "bin" / "sleep").is_symlink():
        return target
    source = bundle.ensure_rootfs()
    partial = target.with_name(f"{ENGINE_ROOTFS}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        shutil.copytree(source, partial, symlinks=True)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(target)
        partial.rename(target)
    except OSError as exc:
        raise EnvError(f"copying the lab's rootfs for the engines: {exc}") from None
    return target

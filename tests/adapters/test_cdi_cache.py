"""The cache of the node's validated CDI registry, on real files: it is read back only while the
spec directories hold exactly the files it was written for, unchanged, and only when it is the
process user's and writable by no one else; anything else is a miss (the full reader runs)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from cgdev.adapters import cdi_cache
from cgdev.ops.entitled import load_registry_cached

SPEC = {
    "cdiVersion": "0.5.0",
    "kind": "example.com/gpu",
    "devices": [
        {"name": "ctl", "containerEdits": {"deviceNodes": [{"path": "/dev/x", "type": "c", "major": 195}]}}
    ],
}
FAR_FUTURE = time.time_ns() + 10**15  # a snapshot that ignores the recency rule


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Spec files older than the cache's settle time (mtime and ctime cannot be backdated)."""
    base = tmp_path_factory.mktemp("cdi-cache")
    (base / "etc").mkdir()
    (base / "etc" / "gpu.json").write_text(json.dumps(SPEC))
    (base / "etc" / "notes.txt").write_text("not a spec")
    time.sleep(2.1)
    return base


@pytest.fixture
def env(settled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, ...]:
    monkeypatch.setenv("CGDEV_STATE_DIR", str(tmp_path / "state"))
    return (str(settled / "etc"), str(settled / "run"))  # the second one missing, as it may be


def test_the_full_read_writes_a_cache_that_reads_back(env: tuple[str, ...]) -> None:
    assert cdi_cache.read_cache(env) is None
    registry = load_registry_cached(env)
    cached = cdi_cache.read_cache(env)
    assert cached is not None
    assert list(cached["devices"]) == list(registry.devices) == ["example.com/gpu=ctl"]
    assert os.stat(cdi_cache.cache_path()).st_mode & 0o777 == 0o600
    assert cdi_cache.read_cache((env[0],)) is None  # other directories: another registry


def test_recent_spec_files_are_never_cached(env: tuple[str, ...], tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "gpu.json").write_text(json.dumps(SPEC))
    assert cdi_cache.snapshot([str(fresh)]) is None
    load_registry_cached([str(fresh)])
    assert not os.path.exists(cdi_cache.cache_path())


@pytest.mark.parametrize("change", ["rewritten", "added", "removed", "renamed"])
def test_a_changed_directory_invalidates_the_cache(env: tuple[str, ...], tmp_path: Path, change: str) -> None:
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    spec = spec_dir / "gpu.json"
    spec.write_text(json.dumps(SPEC))
    before = cdi_cache.snapshot([str(spec_dir)], FAR_FUTURE)
    if change == "rewritten":  # same size, same inode: mtime/ctime tell
        time.sleep(0.02)
        spec.write_text(json.dumps(SPEC).replace("195", "196"))
    elif change == "added":
        (spec_dir / "other.yaml").write_text("{}")
    elif change == "removed":
        spec.unlink()
    else:
        spec.rename(spec_dir / "gpu2.json")
    after = cdi_cache.snapshot([str(spec_dir)], FAR_FUTURE)
    assert before is not None and after != before


def test_a_change_after_the_cache_was_written_is_a_miss(env: tuple[str, ...]) -> None:
    load_registry_cached(env)
    assert cdi_cache.read_cache(env) is not None
    added = Path(env[0]) / "zz.json"
    added.write_text(json.dumps({**SPEC, "kind": "example.com/nic"}))
    try:
        assert cdi_cache.read_cache(env) is None
    finally:
        added.unlink()
    assert cdi_cache.read_cache(env) is not None  # as written again


@pytest.mark.parametrize("damage", ["truncated", "not json", "wrong version", "no registry", "empty"])
def test_a_corrupt_cache_is_a_miss(env: tuple[str, ...], damage: str) -> None:
    load_registry_cached(env)
    path = Path(cdi_cache.cache_path())
    doc = json.loads(path.read_text())
    text = {
        "truncated": path.read_text()[:40],
        "not json": "{'version': 1}",
        "wrong version": json.dumps({**doc, "version": 99}),
        "no registry": json.dumps({**doc, "registry": []}),
        "empty": "",
    }[damage]
    path.write_text(text)
    assert cdi_cache.read_cache(env) is None
    load_registry_cached(env)  # the full reader rewrites it
    assert cdi_cache.read_cache(env) is not None


@pytest.mark.parametrize("where", ["file", "dir"])
def test_a_cache_others_can_write_is_not_trusted(env: tuple[str, ...], where: str) -> None:
    load_registry_cached(env)
    path = cdi_cache.cache_path()
    target = path if where == "file" else os.path.dirname(path)
    os.chmod(target, os.stat(target).st_mode | 0o002)
    assert cdi_cache.read_cache(env) is None


def test_a_symlinked_cache_is_not_followed(env: tuple[str, ...], tmp_path: Path) -> None:
    load_registry_cached(env)
    path = Path(cdi_cache.cache_path())
    real = tmp_path / "elsewhere.json"
    path.rename(real)
    path.symlink_to(real)
    assert cdi_cache.read_cache(env) is None

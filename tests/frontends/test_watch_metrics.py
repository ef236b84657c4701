"""The watcher's metrics endpoint, scraped over real HTTP and read with prometheus_client's own parser."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

pytest.importorskip("prometheus_client", reason="the daemon extra (prometheus-client) is not installed")

from prometheus_client.parser import text_string_to_metric_families

from cgdev.daemon.metrics import Heartbeat, Metrics, Server

EXPECTED = {
    # family name as the parser reports it -> type
    "cgdev_watch_containers": "gauge",
    "cgdev_watch_containers_by_finding": "gauge",
    "cgdev_watch_devices_lost": "counter",
    "cgdev_watch_devices_restored": "counter",
    "cgdev_watch_devices_gained": "counter",
    "cgdev_watch_repair_failures": "counter",
    "cgdev_watch_flapping": "counter",
    "cgdev_watch_bus_reconnects": "counter",
    "cgdev_watch_reaction_seconds": "histogram",
    "cgdev_watch_last_full_scan_timestamp_seconds": "gauge",
    # the text format has no info type: an Info is the gauge ``<name>_info`` with value 1
    "cgdev_build_info": "gauge",
}


@pytest.fixture
def served():
    metrics = Metrics()
    beat = Heartbeat(stale_after=60.0)
    server = Server(metrics, "127.0.0.1", 0, beat.alive)
    server.start()
    try:
        yield metrics, beat, f"http://127.0.0.1:{server.port}"
    finally:
        server.close()


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, "", err.read().decode()


def test_metrics_follow_prometheus_naming_and_types(served) -> None:
    metrics, _, base = served
    metrics.containers.set(3)
    metrics.lost.inc()
    metrics.restored.inc()
    metrics.reaction.observe(0.004)
    metrics.set_codes({"double-filter": 2})
    metrics.last_full_scan.set_to_current_time()
    status, kind, text = get(base + "/metrics")
    assert status == 200 and kind.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {n: f.type for n, f in families.items()} == EXPECTED
    samples = {s.name: s for f in families.values() for s in f.samples}
    # counters end in _total, the histogram has its buckets, info its _info sample
    for name, family in families.items():
        names = {s.name for s in family.samples}
        if family.type == "counter":
            assert f"{name}_total" in names
        elif family.type == "histogram":
            assert {f"{name}_bucket", f"{name}_count", f"{name}_sum"} <= names
        else:
            assert names == {name}
    assert samples["cgdev_watch_devices_lost_total"].value == 1
    assert samples["cgdev_watch_containers"].value == 3
    assert samples["cgdev_watch_reaction_seconds_count"].value == 1
    assert samples["cgdev_build_info"].labels["version"]
    assert samples["cgdev_watch_last_full_scan_timestamp_seconds"].value > 1e9  # seconds since epoch


def test_labels_never_carry_paths_or_names(served) -> None:
    metrics, _, base = served
    metrics.set_codes({"double-filter": 1, "reload-drops-grant": 1})
    metrics.set_codes({"reload-drops-grant": 1})  # a code that went away reads 0, not stale
    text = get(base + "/metrics")[2]
    labelled = [s for f in text_string_to_metric_families(text) for s in f.samples if s.labels]
    allowed = {"code", "version", "le"}
    for sample in labelled:
        assert set(sample.labels) <= allowed, sample
        assert all("/" not in v for v in sample.labels.values()), sample
    codes = {s.labels["code"]: s.value for s in labelled if "code" in s.labels}
    assert codes == {"double-filter": 0.0, "reload-drops-grant": 1.0}


def test_healthz_follows_the_heartbeat_and_nothing_else_is_served(served) -> None:
    _, beat, base = served
    assert get(base + "/healthz")[:1] == (200,)
    beat.last -= 3600  # a loop that stopped beating an hour ago
    assert get(base + "/healthz")[0] == 503
    assert get(base + "/")[0] == 404
    assert get(base + "/metrics/../etc")[0] == 404

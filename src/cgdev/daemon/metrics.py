"""The watcher's metrics and health, read-only, on one small HTTP server (issue 10 item 3).

prometheus-client is the ``daemon`` extra and is imported here only.  Names follow Prometheus'
conventions (base units, ``_total`` counters, ``_info``), and no label carries a container name,
cgroup path or annotation value: a pod's user who can reach the port must not learn the node's
layout from it -- finding codes are cgdev's own fixed vocabulary.

Our own ``http.server`` rather than ``prometheus_client.start_http_server``: that one answers every
path with the metrics, and ``/healthz`` must answer whether the watcher's loop is alive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from cgdev import __version__

REACTION_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Every metric of the watcher, in a private registry (no process/platform collectors: the
    port shows what the watcher saw and nothing about the host)."""

    def __init__(self) -> None:
        import prometheus_client
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

        # ``*_created`` series would double every counter; a process-wide switch, and this
        # process is the daemon
        if hasattr(prometheus_client, "disable_created_metrics"):
            prometheus_client.disable_created_metrics()
        self.registry = CollectorRegistry()
        r = self.registry
        self.containers = Gauge("cgdev_watch_containers", "Containers watched", registry=r)
        self.by_code = Gauge("cgdev_watch_containers_by_finding", "Containers with a finding, by code",
                             ["code"], registry=r)  # fmt: skip
        self.lost = Counter("cgdev_watch_devices_lost", "Entitled devices found denied", registry=r)
        self.restored = Counter("cgdev_watch_devices_restored", "Entitled devices allowed again",
                                registry=r)  # fmt: skip
        self.gained = Counter("cgdev_watch_devices_gained", "Devices allowed that no entitlement names",
                              registry=r)  # fmt: skip
        self.repair_failures = Counter("cgdev_watch_repair_failures", "Repairs that failed", registry=r)
        self.flapping = Counter("cgdev_watch_flapping", "Repairs refused by the per-container rate limit",
                                registry=r)  # fmt: skip
        self.reconnects = Counter("cgdev_watch_bus_reconnects", "Reconnections to systemd's bus",
                                  registry=r)  # fmt: skip
        self.reaction = Histogram("cgdev_watch_reaction_seconds",
                                  "From a change observed (reload, program replaced) to the device restored",
                                  buckets=REACTION_BUCKETS, registry=r)  # fmt: skip
        self.last_full_scan = Gauge("cgdev_watch_last_full_scan_timestamp_seconds",
                                    "When a full scan of every container last succeeded",
                                    registry=r)  # fmt: skip
        Info("cgdev_build", "cgdev's version", registry=r).info({"version": __version__})
        self._codes: set[str] = set()

    def set_codes(self, counts: dict[str, int]) -> None:
        for code in self._codes - counts.keys():
            self.by_code.labels(code=code).set(0)
        for code, n in counts.items():
            self.by_code.labels(code=code).set(n)
        self._codes |= counts.keys()

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class Server:
    """``GET /metrics`` and ``GET /healthz`` (200 while ``alive()``, else 503), nothing else."""

    def __init__(self, metrics: Metrics, address: str, port: int, alive: Callable[[], bool]) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = alive()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"stalled\n", "text/plain")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # scrapes are not events
                pass

        self.httpd = ThreadingHTTPServer((address, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="cgdev-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Heartbeat:
    """The loop beats; ``/healthz`` is healthy while the last beat is recent."""

    def __init__(self, stale_after: float) -> None:
        self.stale_after = stale_after
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.last < self.stale_after

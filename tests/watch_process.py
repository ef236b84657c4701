"""``cgdev watch --json`` as a child process for the watch tests (ops and lab): its events arrive
on a queue as they are printed, so a test waits for the one it needs with a deadline."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any


class WatchProcess:
    def __init__(self, *args: str) -> None:
        argv = [sys.executable, "-m", "cgdev", "watch", "--json", *args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))
        self.events.put(None)

    def wait_for(self, what: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
        while True:
            try:
                event = self.events.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no such event within {timeout} s; seen: {self.seen}") from None
            if event is None:
                stderr = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"the watcher exited ({self.proc.wait()}): {stderr}; seen: {self.seen}")
            self.seen.append(event)
            if what(event):
                return event

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return self.wait_for(lambda e: e["event"] == kind and all(e.get(k) == v for k, v in fields.items()))

    def had(self, kind: str, **fields: Any) -> dict[str, Any]:
        """The event if it was printed already, else the next one like it: the lab is shared, and
        another test's daemon-reload may have taken the device before ours."""
        for e in self.seen:
            if e["event"] == kind and all(e.get(k) == v for k, v in fields.items()):
                return e
        return self.event(kind, **fields)

    def stop(self) -> int:
        """SIGTERM, its exit status, and what it printed last (drained into ``seen``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        while True:
            event = self.events.get(timeout=10)
            if event is None:
                return status
            self.seen.append(event)

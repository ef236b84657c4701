"""Tests of the front ends as a user meets them: ``python -m cgdev ...`` in a child process (exit
status, one-line errors, no traceback, --json), the completion scripts and man page, the
architecture guards (import contract, mypy, ruff).  Markers follow the fixtures a test takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from markers import mark_by_fixtures


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_by_fixtures(items, Path(__file__).parent)

"""Polling for tests that wait on real servers (replication, promotion)."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def eventually(probe: Callable[[], T], timeout_s: float = 10.0, interval_s: float = 0.05) -> T:
    """`probe()` until it returns something truthy or `timeout_s` passes; its last value either way."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)

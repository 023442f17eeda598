"""The mount's state, sampled on the trio thread for the metrics (`metrics`) to read.

A `Sample` is frozen and replaced whole, so another thread (a scrape) reading
`MountMetrics.sample` sees one consistent sample and never the mount's live state.
Imports nothing of prometheus_client: a mount without metrics never loads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

#: Seconds between two samples of the mount's state.
SAMPLE_INTERVAL = 1.0


@dataclass(frozen=True)
class Sample:
    """The mount's state at one instant, taken on the trio thread (`sample_loop`)."""

    dirty_items: int
    dirty_bytes: int
    #: wall-clock time the oldest dirty item became dirty (None: nothing is dirty)
    oldest_dirty_since: float | None
    dirty_limit: int
    uploads_in_flight: int
    cache_used: int
    cache_limit: int
    evictions: int
    evicted_bytes: int
    uploaded_bytes: int
    downloaded_bytes: int
    conflicts: int
    failed_attempts: int
    not_uploadable: int
    store_online: bool
    unmounting: bool
    nodes: int


class Sampled(Protocol):
    """Where samples go (`MountMetrics`)."""

    sample: Sample | None


async def sample_loop(
    metrics: Sampled, take: Callable[[], Sample], interval: float = SAMPLE_INTERVAL
) -> None:
    """Take a sample every `interval` seconds, on the trio thread, until cancelled."""
    while True:
        metrics.sample = take()
        await trio.sleep(interval)

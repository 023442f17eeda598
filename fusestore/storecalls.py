"""Running blocking store calls off the trio thread."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from .stores import Store

T = TypeVar("T")


class StoreCalls:
    """Runs a store's (blocking) methods in worker threads, at most `limit` at a time.

    Every call yields to trio until the thread finishes; a cancelled caller abandons the
    thread (the driver's own timeouts end it). Counts requests by method for `status`.
    """

    def __init__(self, store: Store, limit: int = 16) -> None:
        self.store = store
        self.limiter = trio.CapacityLimiter(limit)
        self.counts: Counter[str] = Counter()

    async def run(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self.counts[getattr(method, "__name__", "call")] += 1
        call = functools.partial(method, *args, **kwargs)
        return await trio.to_thread.run_sync(call, limiter=self.limiter, abandon_on_cancel=True)

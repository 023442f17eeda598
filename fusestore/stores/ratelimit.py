"""A token bucket: bytes per second shared by every thread that moves data.

Drivers run in worker threads, so waiting here is a plain `time.sleep` in the caller's
thread; nothing of this touches the trio thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """At most `rate` units per second over time, bursts of up to a quarter second's worth.

    Thread-safe. `take` blocks (sleeps) for as long as the rate requires: a caller takes
    what it moves, even more than the burst at once, and whoever takes next waits for the
    debt to be paid, so concurrent transfers share the rate, in the order they asked.
    """

    #: Seconds of transfer that idle time saves up.
    burst_seconds = 0.25

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("a rate must be positive")
        self.rate = float(rate)
        self._burst = self.rate * self.burst_seconds
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._tokens = self._burst
        self._stamp = clock()

    def take(self, count: int) -> None:
        """Account for `count` units moved (or about to be); blocks until the rate allows them."""
        if count <= 0:
            return
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= count
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)

"""The watcher behind every "until visible" figure (the store's own SDK: boto3 on S3).

It is started (client made, first listing done) before the operation; `begin()` marks the
operation's start; from then on only listings that *started* after that mark count, and the
time reported is when the first listing that shows the final state *ended* (an upper bound,
the same for every system, and for the limit: its SDK calls are watched the same way).
Between listings it waits at least as long as the last one took, so that it never takes
more than half of the server's time from the work it watches."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from common import BenchError, Deadline
from objects import WATCH_PAGE, Listing, Objects


def is_marker(key: str) -> bool:
    return key.endswith("/")


def has_all(expected: dict[str, int], gone: tuple[str, ...] = ()) -> Callable[[Listing], bool]:
    """Every expected key with its size, and no object (directory markers aside) left
    under any prefix of `gone`."""

    def done(listing: Listing) -> bool:
        for key, size in expected.items():
            got = listing.get(key)
            if got is None or got[0] != size:
                return False
        return not any(k.startswith(p) and not is_marker(k) for k in listing for p in gone)

    return done


class Watcher:
    def __init__(
        self,
        objects: Objects,
        bucket: str,
        prefix: str,
        done: Callable[[Listing], bool],
        *,
        interval: float = 0.1,
        content: tuple[str, str] | None = None,
    ) -> None:
        """`objects`: a client of the watcher's own. `content`: (key, md5 hex) the object
        must hold in the end (read whenever its version changes), on top of `done`."""
        self.objects = objects
        self.bucket = bucket
        self.prefix = prefix
        self.done = done
        self.interval = interval
        self.content = content
        self.t0: float | None = None
        self.seen_at: float | None = None
        self.error: str | None = None
        self.polls = 0
        self._checked_etags: dict[str, bool] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> Watcher:
        self.list()  # the client is made and warm before the operation starts
        self._thread.start()
        return self

    def begin(self) -> float:
        """Mark the operation's start; returns that instant."""
        self.t0 = time.monotonic()
        return self.t0

    def list(self) -> Listing:
        return self.objects.list(self.bucket, self.prefix, page=WATCH_PAGE)

    def _content_ok(self, listing: Listing) -> bool:
        if self.content is None:
            return True
        key, md5 = self.content
        got = listing.get(key)
        if got is None:
            return False
        etag = got[1]
        if etag not in self._checked_etags:
            self._checked_etags[etag] = self.objects.md5(self.bucket, key) == md5
        return self._checked_etags[etag]

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                listing = self.list()
                self.polls += 1
                if (
                    self.t0 is not None
                    and started >= self.t0
                    and self.done(listing)
                    and self._content_ok(listing)
                ):
                    self.seen_at = time.monotonic()
                    return
            except Exception as exc:
                self.error = f"watcher: {exc}"
            # Listing thousands of keys loads the server: at most half its time goes to us.
            self._stop.wait(max(self.interval, time.monotonic() - started))

    def wait(self, deadline: Deadline) -> float:
        """Seconds from `begin()` until the final state was seen; BenchError on timeout."""
        assert self.t0 is not None, "begin() was not called"
        try:
            while self.seen_at is None:
                if deadline.remaining() <= 0:
                    extra = f" ({self.error})" if self.error else ""
                    raise BenchError(f"not visible after {time.monotonic() - self.t0:.0f}s{extra}")
                time.sleep(0.02)
            return self.seen_at - self.t0
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

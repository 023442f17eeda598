"""Running blocking store calls off the trio thread, and knowing whether the store answers."""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import trio

from ..stores import ListPage, ObjectInfo, Store, StoreUnavailable
from ..stores.posix import UPLOAD_TOKEN
from .recent import RecentEvents

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between two probes of a store that stopped answering.
PROBE_INTERVAL = 2.0
#: The store counts as down after this many transient failures in a row, or after
#: failures without a success for this many seconds.
DOWN_AFTER_FAILURES = 5
DOWN_AFTER_SECONDS = 1.0


def call_name(func: Any) -> str:
    """What a callable is called in the log and in the counts: its name, else its type's."""
    while isinstance(func, functools.partial):
        func = func.func
    name = getattr(func, "__name__", None)
    return name if isinstance(name, str) and name else type(func).__name__


def describe_call(call: functools.partial[Any]) -> str:
    """A store call as the debug log shows it: the method, its keys, its conditions and
    the upload token it carries (never a body, never a credential: only strings, numbers
    and the token are shown, and no store method takes a credential)."""
    func: Any = call
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    while isinstance(func, functools.partial):
        args[:0] = func.args
        kwargs = {**func.keywords, **kwargs}
        func = func.func
    words = [call_name(func)]
    words += [repr(a) for a in args if isinstance(a, str)]
    for name, value in kwargs.items():
        if isinstance(value, str | bool | int | float) or value is None:
            words.append(f"{name}={value!r}")
        elif isinstance(value, Mapping) and UPLOAD_TOKEN in value:
            words.append(f"token={value[UPLOAD_TOKEN]!r}")
        elif isinstance(value, ObjectInfo):
            words.append(f"{name}={value.etag!r}")
    return " ".join(words)


def describe_result(result: Any) -> str:
    if isinstance(result, ObjectInfo):
        token = (result.metadata or {}).get(UPLOAD_TOKEN)
        return f"etag {result.etag!r}" + (f" token {token!r}" if token else "")
    if isinstance(result, str):
        return repr(result)
    return type(result).__name__


class StoreTimeout(StoreUnavailable):
    """A call a kernel request waits on did not succeed within the I/O timeout (EIO)."""


class StoreCalls:
    """Runs a store's (blocking) methods in worker threads, at most `limit` at a time.

    Three ways to call, each of which yields to trio while the thread works:

    - `run`: one attempt, as long as it takes (uploads of large files take long); the
      flusher retries on its own schedule.
    - `attempt`: one try, bounded by the I/O timeout (the caller has an older answer).
    - `ask`: for calls a kernel request waits on. Transient failures (`StoreUnavailable`)
      are retried with backoff, and once `io_timeout` seconds have passed the caller gets
      `StoreTimeout` even if the thread still hangs: it is abandoned, and the driver's own
      timeouts end it. So no file system operation waits on the store for longer.
    - `list_all`: a whole listing, page after page, each page (one request, `list_page`)
      a call of its own through `ask` or `attempt`. The timeout bounds each request,
      never the listing: one that keeps making progress takes as long as it needs, while
      a page the store does not answer within `io_timeout` (or a store down that long)
      ends it.

    Every call's outcome updates `online`: a transient failure marks the store down, any
    answer marks it up. While it is down, `watch` probes it every few seconds, and
    `wait_online` returns once it answers again. Counts requests by method for `status`.
    """

    def __init__(self, store: Store, limit: int = 16, io_timeout: float = 30.0) -> None:
        self.store = store
        self._capacity: tuple[float, tuple[int, int] | None] | None = None
        self.limiter = trio.CapacityLimiter(limit)
        self.io_timeout = io_timeout
        self.counts: Counter[str] = Counter()
        self.online = True
        self.down_since: float | None = None
        self._back_online = trio.Event()
        self._back_online.set()
        self._went_down = trio.Event()  # set while the store is down
        self._failures_in_a_row = 0
        self._failing_since: float | None = None
        #: where outages and returns are noted for `status` (the flusher's)
        self.recent = RecentEvents()

    async def run(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One call, as long as it takes (see the class). At DEBUG, one line once it
        ended: `store call: head 'a/b' -> etag '"…"' (3.1 ms, try 1)`."""
        return await self._run(functools.partial(method, *args, **kwargs), 1)

    async def _run(self, call: functools.partial[T], attempt: int) -> T:
        self.counts[call_name(call)] += 1
        traced = describe_call(call) if log.isEnabledFor(logging.DEBUG) else None
        started = time.monotonic()
        try:
            result = await trio.to_thread.run_sync(call, limiter=self.limiter, abandon_on_cancel=True)
        except StoreUnavailable as exc:
            self._mark_down(exc)
            self._trace(traced, f"failed: {type(exc).__name__}", started, attempt)
            raise
        except Exception as exc:
            self._mark_up()  # it answered, if only to refuse
            self._trace(traced, f"failed: {type(exc).__name__}", started, attempt)
            raise
        except BaseException:
            self._trace(traced, "cancelled", started, attempt)  # abandoned; the thread may go on
            raise
        self._mark_up()
        if traced is not None:
            self._trace(traced, f"-> {describe_result(result)}", started, attempt)
        return result

    @staticmethod
    def _trace(traced: str | None, outcome: str, started: float, attempt: int) -> None:
        if traced is not None:
            elapsed = (time.monotonic() - started) * 1000
            log.debug("store call: %s %s (%.1f ms, try %d)", traced, outcome, elapsed, attempt)

    async def attempt(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One try, for calls whose failure the caller can live with (it has an older
        answer): StoreTimeout after the I/O timeout."""
        with trio.move_on_after(self.io_timeout):
            return await self.run(method, *args, **kwargs)
        name = call_name(method)
        raise StoreTimeout(f"the store did not answer {name} within {self.io_timeout:g}s")

    async def ask(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # While the store is down, no request waits past the I/O timeout counted from the
        # outage's start (so requests queued behind each other do not add up), but each
        # makes at least one try.
        patience = self.io_timeout - self.down_for()
        if patience <= 0:
            return await self.attempt(method, *args, **kwargs)
        deadline = trio.current_time() + patience
        delay = 0.05
        last: StoreUnavailable | None = None
        call = functools.partial(method, *args, **kwargs)
        with trio.move_on_at(deadline):
            for attempt in itertools.count(1):
                try:
                    return await self._run(call, attempt)
                except StoreUnavailable as exc:
                    last = exc
                # Backoff capped so the store's return is noticed within a second or two.
                await trio.sleep(min(delay, max(0.0, deadline - trio.current_time())))
                delay = min(delay * 2, 2.0)
        name = call_name(method)
        reason = f": {last}" if last is not None else " (no answer)"
        raise StoreTimeout(f"the store did not answer {name} within {self.io_timeout:g}s{reason}")

    async def list_all(
        self, prefix: str, delimiter: str | None = "/", *, patient: bool = True
    ) -> tuple[list[ObjectInfo], list[str]]:
        """Every entry under `prefix` (the objects, then the common prefixes), one worker
        thread call per page. `patient`: each page as `ask` (retried while the store is
        failing, for a request that has no older answer); else as `attempt` (one try).
        StoreTimeout when a page does not come within the I/O timeout."""
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        token: str | None = None
        while True:
            # A fresh timeout per page: an answer is progress, whatever the pages before took.
            page = await self.list_page(prefix, delimiter, token, patient=patient)
            objects.extend(page.objects)
            prefixes.extend(page.prefixes)
            if page.next_token is None:
                return objects, prefixes
            token = page.next_token

    async def list_page(
        self, prefix: str, delimiter: str | None = "/", token: str | None = None, *, patient: bool = True
    ) -> ListPage:
        """One page of a listing (`token`: where the last one ended), as `ask` (`patient`)
        or `attempt`: StoreTimeout when it does not come within the I/O timeout."""
        call = self.ask if patient else self.attempt
        return await call(self.store.list, prefix, delimiter, token)

    # -- availability -------------------------------------------------------------------

    def _mark_down(self, exc: Exception) -> None:
        # One failure is no outage (a store failing a fifth of its calls must not flap):
        # down after several in a row, or failures without a success for a second.
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        self._failures_in_a_row += 1
        if self._failures_in_a_row < DOWN_AFTER_FAILURES and now - self._failing_since < DOWN_AFTER_SECONDS:
            return
        if self.online:
            self.online = False
            self.down_since = time.monotonic()
            self._back_online = trio.Event()
            self._went_down.set()
            log.warning("the store is not answering (%s); changes stay in the cache meanwhile", exc)
            self.recent.note("store", f"the store is not answering: {exc}")

    def _mark_up(self) -> None:
        self._failures_in_a_row = 0
        self._failing_since = None
        if not self.online:
            self.online = True
            down = time.monotonic() - (self.down_since or time.monotonic())
            self.down_since = None
            log.warning("the store answers again (after %.0fs); resuming uploads", down)
            self.recent.note("store", f"the store answers again (after {down:.0f}s)")
            self._went_down = trio.Event()
            self._back_online.set()

    async def wait_online(self) -> None:
        """Return once the store answers (at once when it does)."""
        await self._back_online.wait()

    async def wait_offline(self) -> None:
        """Return once a call found the store down (at once while it is)."""
        await self._went_down.wait()

    def down_for(self) -> float:
        """Seconds since the store stopped answering (0 while it answers)."""
        return 0.0 if self.down_since is None else time.monotonic() - self.down_since

    async def watch(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Probe the store while it is down (long-lived task)."""
        task_status.started()
        while True:
            await self.wait_offline()
            while not self.online:
                await trio.sleep(PROBE_INTERVAL)
                if self.online:
                    break
                # What a probe raises is already recorded by `run`.
                with trio.move_on_after(self.io_timeout), contextlib.suppress(Exception):
                    await self.run(self.store.probe)

    async def capacity(self) -> tuple[int, int] | None:
        """Total and free bytes of the store, where it knows them (remembered for a minute);
        None where it does not (S3). Worker thread: the store's statistics."""
        cached = self._capacity
        if cached is None or time.monotonic() - cached[0] > 60:
            stats = await self.ask(self.store.stat_store)
            total, free = stats.total_bytes, stats.free_bytes
            known = None if total is None else (total, total if free is None else free)
            cached = self._capacity = (time.monotonic(), known)
        return cached[1]

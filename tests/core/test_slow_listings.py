"""The I/O timeout bounds each store request, never a listing that keeps making progress:
a listing of many pages, each well within `io_timeout` but together far longer, completes
with every entry (a directory's listing, and the recursive one of a directory renamed);
a store that stops answering mid-listing still ends it in StoreUnavailable (EIO) after
about `io_timeout`, without hanging."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from fusestore.core import pinning
from fusestore.stores import StoreUnavailable

from .conftest import Env, ino_of, listdir

pytestmark = pytest.mark.trio

IO_TIMEOUT = 2.0
PAGE = 10  # entries per page: many pages from a few dozen objects


@pytest.fixture
def page_clock(virtual_clock: MockClock, monkeypatch: pytest.MonkeyPatch) -> MockClock:
    """The virtual clock, with store calls that run inline but, like a worker thread the
    caller waits on, notice a deadline that passed while they ran (a thread past its
    deadline is abandoned, its answer not taken)."""

    async def run_inline(call: Callable[..., Any], *args: Any, **_options: Any) -> Any:
        await trio.lowlevel.checkpoint()
        result = call(*args)
        await trio.lowlevel.checkpoint()
        return result

    monkeypatch.setattr(trio.to_thread, "run_sync", run_inline)
    return virtual_clock


def slow_pages(env: Env, clock: MockClock, seconds: float) -> list[str]:
    """Every LIST returns at most PAGE entries and takes `seconds` (virtual) to answer.
    Returns the prefixes listed, one per page asked."""
    asked: list[str] = []
    real = env.store.list

    def listing(
        prefix: str, delimiter: str | None = "/", token: str | None = None, max_keys: int = 1000
    ) -> Any:
        asked.append(prefix)
        clock.jump(seconds)
        return real(prefix, delimiter, token, min(max_keys, PAGE))

    env.store.list = listing  # type: ignore[method-assign]
    return asked


async def test_a_listing_that_keeps_making_progress_never_times_out(env: Env, page_clock: MockClock) -> None:
    names = {f"f{i:03d}" for i in range(6 * PAGE)}
    for name in names:
        env.put(f"big/{name}", b"x")
    asked = slow_pages(env, page_clock, IO_TIMEOUT * 0.4)
    async with env.mount(flusher=False, io_timeout=IO_TIMEOUT) as fs:
        start = trio.current_time()
        assert set(await listdir(fs, "big")) == names
        pages = asked.count("big/")
        assert pages >= 6
        # Every page was slower than a third of the timeout, and together far longer.
        assert trio.current_time() - start >= pages * IO_TIMEOUT * 0.4 > 2 * IO_TIMEOUT


async def test_a_refreshed_listing_keeps_making_progress(env: Env, page_clock: MockClock) -> None:
    # A directory listed before is listed again with one try per page (the older listing
    # is the fallback): that try too is bounded per page, not per listing.
    for i in range(3):
        env.put(f"big/f{i}", b"x")
    async with env.mount(flusher=False, io_timeout=IO_TIMEOUT, metadata_ttl=1.0) as fs:
        assert len(await listdir(fs, "big")) == 3
        names = {f"g{i:03d}" for i in range(6 * PAGE)}
        for name in names:
            env.put(f"big/{name}", b"x")
        asked = slow_pages(env, page_clock, IO_TIMEOUT * 0.4)
        await trio.sleep(2.0)  # past the TTL
        assert set(await listdir(fs, "big")) == names | {"f0", "f1", "f2"}
        assert asked.count("big/") >= 6


def plant_tree(env: Env) -> set[str]:
    """Three directories of two listing pages each, under `tree/`."""
    keys = {f"tree/d{d}/f{i:02d}" for d in range(3) for i in range(2 * PAGE)}
    for key in keys:
        env.put(key, b"x")
    return keys


async def test_a_directory_renamed_through_a_slow_recursive_listing(env: Env, page_clock: MockClock) -> None:
    keys = plant_tree(env)
    async with env.mount(io_timeout=IO_TIMEOUT) as fs:
        await ino_of(fs, "tree")
        slow_pages(env, page_clock, IO_TIMEOUT * 0.4)
        await fs.rename(1, "tree", 1, "moved", 0)
    assert set(env.objects()) == {"moved/" + key.removeprefix("tree/") for key in keys}


async def test_a_directory_pinned_through_a_slow_recursive_listing(env: Env, page_clock: MockClock) -> None:
    keys = plant_tree(env)
    async with env.mount(io_timeout=IO_TIMEOUT) as fs:
        await ino_of(fs, "tree")
        slow_pages(env, page_clock, IO_TIMEOUT * 0.4)
        progress = await pinning.pin(fs, "tree")
        assert (progress.files_done, progress.errors) == (len(keys), [])


def stop_answering_after(env: Env, pages: int, *, hang: bool) -> tuple[threading.Event, list[float]]:
    """LISTs of `big/` return PAGE entries; after `pages` of them the store stops
    answering: each further call hangs until the returned event is set (`hang`), or fails
    at once as a store that is down does. The list gets the (monotonic) time the last
    answer was given, and one entry per unanswered call."""
    release = threading.Event()
    times: list[float] = []
    real = env.store.list

    def listing(
        prefix: str, delimiter: str | None = "/", token: str | None = None, max_keys: int = 1000
    ) -> Any:
        if not prefix.startswith("big/"):
            return real(prefix, delimiter, token, max_keys)
        if len(times) < pages:
            page = real(prefix, delimiter, token, min(max_keys, PAGE))
            times.append(time.monotonic())
            return page
        times.append(time.monotonic())
        if hang:
            release.wait(20)
        raise StoreUnavailable("test: the store stopped answering")

    env.store.list = listing  # type: ignore[method-assign]
    return release, times


@pytest.mark.parametrize("hang", [True, False], ids=["hangs", "fails"])
async def test_a_store_that_stops_answering_mid_listing_gives_eio_after_the_timeout(
    env: Env, hang: bool
) -> None:
    for i in range(6 * PAGE):
        env.put(f"big/f{i:03d}", b"x")
    release, times = stop_answering_after(env, 3, hang=hang)
    try:
        async with env.mount(flusher=False, io_timeout=1.0) as fs:
            with pytest.raises(StoreUnavailable):
                await listdir(fs, "big")
            # The timeout counts from the last answer (the page after it was asked later):
            # not cut short, and not hanging.
            waited = time.monotonic() - times[2]
            assert 0.99 <= waited < 5, waited
            if not hang:
                assert len(times) > 3 + 1, "the failing page is retried while the timeout lasts"
    finally:
        release.set()

"""While the store cannot be asked, no name is reported absent for that reason: a lookup
or listing that needs the store waits for it and fails with EIO (StoreUnavailable),
whether it asked itself or waited for another request's listing of the same directory."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from fusestore.stores import StoreError, StoreUnavailable

from .conftest import Env, ino_of, listdir

pytestmark = pytest.mark.trio


def hold_listings(env: Env, prefix: str) -> tuple[threading.Event, threading.Event]:
    """Listings of `prefix` hang until the second event returned is set, then fail as an
    unreachable store does; other calls go through. The first is set once one is asked."""
    asked, release = threading.Event(), threading.Event()
    real = env.store.list

    def listing(prefix_asked: str, *args: Any, **kwargs: Any) -> Any:
        if prefix_asked == prefix:
            asked.set()
            release.wait(20)
            raise StoreUnavailable("test: the store is down")
        return real(prefix_asked, *args, **kwargs)

    env.store.list = listing  # type: ignore[method-assign]
    return asked, release


async def test_lookups_waiting_for_a_failed_listing_are_not_told_the_name_is_absent(env: Env) -> None:
    env.put("pre/u1", b"u")
    env.put("pre/u2", b"u")
    asked, release = hold_listings(env, "pre/")
    async with env.mount(flusher=False, io_timeout=2) as fs:
        pre = await ino_of(fs, "pre")
        outcomes: dict[str, object] = {}

        async def ask(name: str, call: Any) -> None:
            try:
                outcomes[name] = await call()
            except StoreError as exc:
                outcomes[name] = type(exc)
            except OSError as exc:
                outcomes[name] = exc.errno

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, "first lookup", lambda: fs.lookup(pre, "u1"))
            await trio.to_thread.run_sync(asked.wait, 10)  # the first lookup's listing is in flight
            nursery.start_soon(ask, "second lookup", lambda: fs.lookup(pre, "u2"))
            nursery.start_soon(ask, "listing", lambda: listdir(fs, "pre"))
            await wait_all_tasks_blocked()  # both wait for that listing
            release.set()
        for name, outcome in outcomes.items():
            assert isinstance(outcome, type) and issubclass(outcome, StoreUnavailable), (name, outcome)

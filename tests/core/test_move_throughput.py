"""How soon a renamed tree reaches the store: its copies go at once, many at a time, and
the deletes of the keys they free follow as soon as the last copy landed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from .conftest import Env, ino_of, write_file

pytestmark = pytest.mark.trio


class AtOnce:
    """A store method made slow (50 ms a call, real time), counting how many calls run at
    once at most (`most`). Called from the worker threads."""

    def __init__(self, method: Callable[..., Any]) -> None:
        self.method = method
        self.lock = threading.Lock()
        self.running = self.most = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.05)
            return self.method(*args, **kwargs)
        finally:
            with self.lock:
                self.running -= 1


def seed_tree(env: Env, count: int) -> None:
    for i in range(count):
        env.put(f"src/f{i:03}", b"x" * 10)


async def test_a_renamed_clean_file_is_copied_without_waiting_for_the_writeback_delay(
    env: Env, virtual_clock: MockClock
) -> None:
    """Nothing to coalesce: its data did not change here. A file written and then renamed
    still waits for the delay (its bytes may change again)."""
    env.put("moved", b"m")
    async with env.mount(writeback_delay=30.0) as fs:
        await fs.lookup(1, "moved")
        await write_file(fs, "written", b"w")
        start = trio.current_time()
        await fs.rename(1, "moved", 1, "moved2", 0)
        await fs.rename(1, "written", 1, "written2", 0)
        await trio.sleep(1.0)
        assert [args[:2] for args in env.called("copy")] == [("moved", "moved2")]
        assert env.called("put") == [], "a written file waits for the writeback delay"
        assert trio.current_time() - start < 2.0
    assert env.objects() == {"moved2": b"m", "written2": b"w"}


async def test_a_renamed_tree_is_copied_by_more_jobs_than_the_upload_workers(env: Env) -> None:
    """Copies send no data from here: they run up to the store's connections at once."""
    seed_tree(env, 40)
    copies = AtOnce(env.store.copy)
    env.store.copy = copies  # type: ignore[method-assign]
    async with env.mount(upload_workers=2, store_connections=8) as fs:
        await fs.lookup(1, "src")
        await fs.rename(1, "src", 1, "dst", 0)
    assert len(env.called("copy")) == 40
    assert copies.most > 2, f"at most {copies.most} copies at a time"
    assert copies.most <= 8
    assert sorted(env.objects()) == [f"dst/f{i:03}" for i in range(40)]


async def test_data_uploads_stay_within_the_upload_workers_beside_copies(env: Env) -> None:
    puts = AtOnce(env.store.put)
    env.store.put = puts  # type: ignore[method-assign]
    seed_tree(env, 20)
    async with env.mount(upload_workers=2, store_connections=8) as fs:
        for i in range(12):
            await write_file(fs, f"new{i}", b"n")
        await fs.lookup(1, "src")
        await fs.rename(1, "src", 1, "dst", 0)
    assert puts.most == 2, f"{puts.most} data uploads at a time"
    assert len(env.called("copy")) == 20


async def test_the_deletes_follow_the_last_copy_of_a_rename_at_once(
    env: Env, virtual_clock: MockClock
) -> None:
    """Once every copy landed, no more keys are coming: the batch goes (one request)."""
    seed_tree(env, 100)
    copied: list[float] = []
    deleted: list[float] = []
    copy, delete_many = env.store.copy, env.store.delete_many

    def timed_copy(*args: Any, **kwargs: Any) -> Any:
        copied.append(trio.current_time())
        return copy(*args, **kwargs)

    def timed_delete_many(*args: Any, **kwargs: Any) -> Any:
        deleted.append(trio.current_time())
        return delete_many(*args, **kwargs)

    env.store.copy = timed_copy  # type: ignore[method-assign]
    env.store.delete_many = timed_delete_many  # type: ignore[method-assign]
    async with env.mount(writeback_delay=2.0) as fs:
        await fs.lookup(1, "src")
        await fs.rename(1, "src", 1, "dst", 0)
        with trio.fail_after(60):
            while not deleted:
                await trio.sleep(0.01)
    assert len(copied) == 100
    assert len(deleted) == 1, "one batch"
    assert deleted[0] - max(copied) < 0.3, f"the deletes waited {deleted[0] - max(copied):.2f}s"
    assert sorted(env.objects()) == [f"dst/f{i:03}" for i in range(100)]


async def test_a_file_renamed_twice_in_a_row_is_copied_once(env: Env) -> None:
    """`mv a b && mv b c`: a moment's wait still lets back-to-back renames coalesce."""
    env.put("a", b"a")
    async with env.mount(writeback_delay=2.0) as fs:
        await ino_of(fs, "a")
        await fs.rename(1, "a", 1, "b", 0)
        await trio.sleep(0.01)
        await fs.rename(1, "b", 1, "c", 0)
    assert [args[:2] for args in env.called("copy")] == [("a", "c")]
    assert env.objects() == {"c": b"a"}


async def test_a_store_refusing_writes_but_answering_reads_gets_no_storm_of_retries(
    env: Env, virtual_clock: MockClock
) -> None:
    """Many copies failing in a row take the store for down; a read answered (a fetch, the
    HEAD settling a failed copy) takes it for back, and every failure is retried at once:
    a store that keeps refusing writes must not be sent them in a loop meanwhile."""
    seed_tree(env, 40)
    env.offline = True
    async with env.mount(sync=False) as fs:
        await fs.lookup(1, "src")
        await fs.rename(1, "src", 1, "dst", 0)
        with trio.move_on_after(5.0):
            await fs.flusher.sync_all()
        copies = len(env.called("copy"))
        assert copies < 40 * 8, f"{copies} copies sent in 5 s to a store refusing them"
    env.offline = False
    async with env.mount():
        pass
    assert sorted(env.objects()) == [f"dst/f{i:03}" for i in range(40)]

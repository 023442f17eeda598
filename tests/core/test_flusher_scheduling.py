"""When the flusher uploads: rewrites postpone a file without piling up queue entries, and
uploads wait while a burst of new files goes on, but not for longer than a limit."""

from __future__ import annotations

import os
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from .conftest import Env, write_file

pytestmark = pytest.mark.trio


async def test_a_file_written_many_times_keeps_one_queue_entry(env: Env) -> None:
    async with env.mount(writeback_delay=30.0) as fs:
        fh, node = await fs.create(1, "log", 0o644, os.O_WRONLY, 0, 0)
        for i in range(5000):
            await fs.write(fh, i * 10, b"0123456789")
        fs.release(fh)
        assert node in fs.flusher.due
        assert fs.flusher.entries <= 2, "postponing a file pushes nothing"
    assert env.objects() == {"log": b"0123456789" * 5000}


async def test_a_burst_of_new_files_does_not_wake_the_flusher_per_change(
    env: Env, virtual_clock: MockClock
) -> None:
    """Each new file is several changes (create, write, close); the flusher's loop, which
    scans its queue each time it runs, need not run for a change due after the time it
    wakes at anyway. Here it ran 196 times before, once now; in a mounted daemon creating
    1000 files, 6313 times before and 1332 now (that is, with the uploads)."""
    async with env.mount(writeback_delay=2.0) as fs:
        await trio.sleep(0.1)
        before = fs.flusher.rounds
        for i in range(300):
            await write_file(fs, f"f{i:03}", b"x" * 4096)
            await trio.sleep(0)  # the flusher's turn, if it was woken
        made = fs.flusher.rounds - before
    assert made <= 30, f"the flusher ran {made} times for 300 new files"
    assert len(env.objects()) == 300


def timed_puts(env: Env) -> list[float]:
    """The list of the times (trio's clock) at which uploads start, filled as they do."""
    started: list[float] = []
    put = env.store.put

    def timed_put(*args: Any, **kwargs: Any) -> Any:
        started.append(trio.current_time())
        return put(*args, **kwargs)

    env.store.put = timed_put  # type: ignore[method-assign]
    return started


async def make_files_for(fs: Any, seconds: float) -> int:
    """New files, each due almost at once, one every 3 ms for `seconds`; returns how many.
    (On the virtual clock: a slow machine makes the burst no slower.)"""
    start = trio.current_time()
    count = 0
    while trio.current_time() < start + seconds:
        await write_file(fs, f"f{count:05}", b"x")
        count += 1
        await trio.sleep(0.003)
    return count


async def test_uploads_wait_while_a_burst_of_new_files_goes_on(env: Env, virtual_clock: MockClock) -> None:
    started = timed_puts(env)
    async with env.mount(writeback_delay=0.01, upload_workers=4) as fs:
        begin = trio.current_time()
        count = await make_files_for(fs, 1.5)
        end = trio.current_time()
        with trio.fail_after(30):
            while fs.flusher.due or fs.flusher.running:
                await trio.sleep(0.05)
    assert count > 400
    # The burst is known once 40 files came within half a second; from then on, nothing.
    assert [t for t in started if t < begin + 0.15], "the first files went up before the burst"
    during = [t for t in started if begin + 0.15 < t < end]
    assert not during, f"{len(during)} uploads started during the burst"
    assert len(env.objects()) == count, "all went up once it paused"


async def test_a_long_burst_holds_no_upload_longer_than_the_limit(env: Env, virtual_clock: MockClock) -> None:
    started = timed_puts(env)
    async with env.mount(writeback_delay=0.01, upload_workers=4) as fs:
        fs.flusher.burst_max_hold = 0.3
        begin = trio.current_time()
        count = await make_files_for(fs, 2.0)
        end = trio.current_time()
    assert count > 100
    assert [t for t in started if begin + 1.0 < t < end], "the burst held uploads past the limit"
    assert len(env.objects()) == count


async def test_new_files_cost_one_put_each_and_no_other_request(env: Env, virtual_clock: MockClock) -> None:
    """What the bench's create and untar workloads count (1000 and 2139 PutObject)."""
    async with env.mount(writeback_delay=0.01) as fs:
        await make_files_for(fs, 0.3)
        count = len([n for n in fs.ns.root.children or {}])
    assert count > 20
    assert len(env.called("put")) == count
    others = [name for name, _ in env.calls if name != "put"]
    # The root is listed once, before the first create (a mount's probe does that).
    assert others == ["list"], f"requests besides the puts: {others}"

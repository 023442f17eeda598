"""When the flusher uploads: rewrites postpone a file without piling up queue entries, and
a burst of new files is uploaded one at a time until it pauses."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest
import trio

from .conftest import Env, write_file

pytestmark = pytest.mark.trio


async def test_a_file_written_many_times_keeps_one_queue_entry(env: Env) -> None:
    async with env.mount(writeback_delay=30.0) as fs:
        fh, node = await fs.create(1, "log", 0o644, os.O_WRONLY, 0, 0)
        for i in range(5000):
            await fs.write(fh, i * 10, b"0123456789")
        fs.release(fh)
        assert node in fs.flusher.due
        assert len(fs.flusher._queue) <= 2, "postponing a file pushes nothing"
    assert env.objects() == {"log": b"0123456789" * 5000}


async def test_a_burst_of_new_files_is_uploaded_one_at_a_time_until_it_pauses(env: Env) -> None:
    lock = threading.Lock()
    running: list[int] = [0]
    during_burst: list[int] = []
    watching = [False]  # from when the burst is known (40 files in) until it ends
    put = env.store.put

    def slow_put(*args: Any, **kwargs: Any) -> Any:
        with lock:
            running[0] += 1
            if watching[0]:
                during_burst.append(running[0])
        try:
            time.sleep(0.02)  # an upload takes a while, as over a network
            return put(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    env.store.put = slow_put  # type: ignore[method-assign]
    async with env.mount(writeback_delay=0.01, upload_workers=4) as fs:
        start = trio.current_time()
        count = 0
        while trio.current_time() < start + 1.5:  # new files, each due almost at once
            await write_file(fs, f"f{count:05}", b"x")
            count += 1
            watching[0] = trio.current_time() > start + 0.5
            await trio.sleep(0.001)
        watching[0] = False
        with trio.fail_after(30):
            while fs.flusher.due or fs.flusher.running:
                await trio.sleep(0.05)
    assert count > 100
    assert during_burst, "uploads went on during the burst"
    assert max(during_burst) == 1, f"at most one upload at a time during the burst, saw {max(during_burst)}"
    assert len(env.objects()) == count

"""A file larger than the dirty limit: its full parts go up ahead as a staged upload."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
import trio

from fusestore.core.filesystem import STAGE_CHUNK
from fusestore.writeback.staging import PART_SIZE

from .conftest import READS, WRITES, Env, MiB, ino_of, pattern, read_path

pytestmark = pytest.mark.trio

LIMIT = 16 * MiB


async def write_watching_dirty(fs, fh: int, data: bytes, chunk: int = MiB, start: int = 0) -> int:  # type: ignore[no-untyped-def]
    """Write `data` sequentially; returns the most dirty bytes seen after any write."""
    peak = 0
    for offset in range(0, len(data), chunk):
        await fs.write(fh, start + offset, data[offset : offset + chunk])
        peak = max(peak, fs.dirty_bytes())
    return peak


async def test_one_file_larger_than_the_dirty_limit_stays_within_limit_plus_a_chunk(env: Env) -> None:
    data = pattern(80 * MiB, seed=1)
    async with env.mount(dirty_limit=LIMIT, writeback_delay=30) as fs:
        fh, _ = await fs.create(1, "big", 0o644, os.O_WRONLY, 0, 0)
        with trio.fail_after(30):
            peak = await write_watching_dirty(fs, fh, data)
        assert peak <= LIMIT + STAGE_CHUNK + MiB, f"{peak / MiB:.0f} MiB dirty"  # + the last write
        assert env.objects() == {}, "nothing is visible before the upload completes"
        assert [p.key for p in fs.store.list_multipart()] == ["big"]
        fs.release(fh)
    assert env.objects() == {"big": data}
    assert fs.store.list_multipart() == []
    assert len(env.called("start_multipart")) == 1, "one staged upload, completed at the end"
    assert len(env.called("put_part")) == len(data) // PART_SIZE


async def test_a_rewrite_of_a_part_already_sent_sends_it_again(env: Env) -> None:
    data = bytearray(pattern(48 * MiB, seed=2))
    async with env.mount(dirty_limit=LIMIT, writeback_delay=30) as fs:
        fh, _ = await fs.create(1, "big", 0o644, os.O_RDWR, 0, 0)
        with trio.fail_after(30):
            await write_watching_dirty(fs, fh, bytes(data))
            sent = len(env.called("put_part"))
            assert sent >= 2
            patch = b"rewritten at the start of part one"
            await fs.write(fh, 10, patch)
            data[10 : 10 + len(patch)] = patch
            await fs.truncate(fs.node(await ino_of(fs, "big")), 40 * MiB + 3, fh)
            del data[40 * MiB + 3 :]
        fs.release(fh)
    assert env.objects() == {"big": bytes(data)}
    assert fs.store.list_multipart() == []


async def test_a_staged_file_renamed_or_removed_leaves_no_upload_behind(env: Env) -> None:
    data = pattern(48 * MiB, seed=3)
    async with env.mount(dirty_limit=LIMIT, writeback_delay=30) as fs:
        for name in ("moved", "removed"):
            fh, _ = await fs.create(1, name, 0o644, os.O_WRONLY, 0, 0)
            with trio.fail_after(30):
                await write_watching_dirty(fs, fh, data)
            assert name in [p.key for p in fs.store.list_multipart()]
            if name == "moved":
                await fs.rename(1, "moved", 1, "renamed", 0)
            else:
                await fs.unlink(1, "removed")
            fs.release(fh)
        await fs.flusher.sync_all()
        assert await read_path(fs, "renamed") == data
    assert env.objects() == {"renamed": data}
    assert fs.store.list_multipart() == []


async def test_an_upload_left_by_a_killed_daemon_is_aborted_at_the_next_mount(env: Env) -> None:
    data = pattern(40 * MiB, seed=4)
    async with env.mount(dirty_limit=LIMIT, writeback_delay=30, sync=False) as fs:
        fh, _ = await fs.create(1, "big", 0o644, os.O_WRONLY, 0, 0)
        with trio.fail_after(30):
            await write_watching_dirty(fs, fh, data)
        await fs.fsync(fh)
        left = fs.store.list_multipart()
        assert [p.key for p in left] == ["big"]
        # No release, no sync: as if the daemon was killed here.
    env.put_raw("unrelated-upload-marker", b"")
    other = env.store.start_multipart("someone-elses")  # not ours: must survive
    async with env.mount() as fs:
        assert await read_path(fs, "big") == data
    assert env.objects()["big"] == data
    assert [(p.key, p.upload_id) for p in env.store.list_multipart()] == [("someone-elses", other)]


async def test_a_big_new_file_goes_up_in_parts_of_8_mib_and_no_other_request(env: Env) -> None:
    """(a) of the bench: a multipart upload costs one request per 8 MiB, not per 5 MiB."""
    data = pattern(72 * MiB + 5, seed=6)
    async with env.mount() as fs:
        fh, _ = await fs.create(1, "big", 0o644, os.O_WRONLY, 0, 0)
        await write_watching_dirty(fs, fh, data)
        fs.release(fh)
    assert env.objects() == {"big": data}
    sent = [name for name, _ in env.calls if name in (*WRITES, *READS)]
    assert sent.count("put_part") == 10  # 72 MiB + 5 bytes in 8 MiB parts (15 of 5 MiB)
    assert sorted(set(sent)) == ["complete_multipart", "list", "put_part", "start_multipart"]
    assert sent.count("start_multipart") == sent.count("complete_multipart") == sent.count("list") == 1


async def test_a_part_written_again_while_the_upload_completes_keeps_the_upload_staged(env: Env) -> None:
    """The writer goes on while its file is being completed (the write-back delay came
    during a pause): the part it changes meanwhile is sent again, the upload is kept."""
    data = bytearray(pattern(40 * MiB + 5, seed=4))
    async with env.mount(dirty_limit=LIMIT, writeback_delay=30) as fs:
        fh, node = await fs.create(1, "big", 0o644, os.O_RDWR, 0, 0)
        with trio.fail_after(30):
            await write_watching_dirty(fs, fh, bytes(data))
        (staged,) = fs.flusher.staged.values()
        last = math.ceil(len(data) / staged.part_size)  # sent only as the upload completes
        put_part = env.store.put_part
        sent: list[int] = []

        def put_then_written(key: str, upload_id: str, number: int, body: bytes) -> Any:
            part = put_part(key, upload_id, number, body)
            sent.append(number)
            if sent.count(last) == 1 and number == last:  # the writer's next write lands in it
                trio.from_thread.run(fs.write, fh, len(data) - 1, b"!")
            return part

        env.store.put_part = put_then_written  # type: ignore[method-assign]
        failed = fs.flusher.failed_attempts
        with trio.fail_after(30):
            await fs.flusher.wait_uploaded(node)  # due now; its first completion fails
        data[-1:] = b"!"
        assert fs.flusher.failed_attempts == failed + 1, "the completion found its part changed"
        assert sent.count(last) == 2, "the changed part went again"
        assert all(sent.count(n) == 1 for n in sent if n != last), "the parts sent before stay sent"
        assert not env.called("abort_multipart"), "the upload stayed staged"
        fs.release(fh)
    assert env.objects() == {"big": bytes(data)}
    assert len(env.called("start_multipart")) == 1
    assert fs.store.list_multipart() == []

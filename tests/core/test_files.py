"""Creating, writing and truncating files: the bytes the core reads back and uploads."""

from __future__ import annotations

import os
import random
import stat
import threading
import time

import pytest
import trio
from trio.testing import MockClock

from fusestore.core.filesystem import Filesystem
from fusestore.stores import PosixAttrs

from .conftest import Env, MiB, ino_of, mkdir, pattern, read_all, read_path, resolve, write_file

pytestmark = pytest.mark.trio


def assert_synced(fs: Filesystem) -> None:
    """Nothing left to do: no pending node, an empty journal, an idle flusher."""
    pending = [node.path() for node in fs.ns.nodes.values() if node.pending]
    assert pending == []
    assert fs.journal.read_all().nodes == {}
    assert fs.journal.read_all().deletes == {}
    assert fs.flusher.idle()


async def test_create_write_release_uploads_bytes_and_s3fs_metadata(env: Env) -> None:
    data = pattern(300_000, seed=1)
    async with env.mount() as fs:
        d = await mkdir(fs, "dir")
        fh, node = await fs.create(d.ino, "f.bin", stat.S_IFREG | 0o640, os.O_WRONLY, 1234, 5678)
        assert node.pending
        assert await fs.write(fh, 0, data) == len(data)
        fs.release(fh)
        journaled = {rec["key"]: rec for rec in fs.journal.read_all().nodes.values()}
        assert journaled["dir/f.bin"]["data_dirty"], "the change is journaled before it is uploaded"
        # ... naming the cache file that holds the data (a restart takes the size from it)
        assert (fs.cache.data_dir / journaled["dir/f.bin"]["content"]).stat().st_size == len(data)
        await fs.flusher.sync_all()

        assert env.objects() == {"dir/f.bin": data}
        meta = env.metadata("dir/f.bin")
        attrs = PosixAttrs.from_metadata(meta)
        assert attrs.mode == stat.S_IFREG | 0o640
        assert (attrs.uid, attrs.gid) == (1234, 5678)
        assert attrs.mtime_ns == node.mtime_ns
        assert abs(attrs.mtime_ns - time.time_ns()) < 60 * 10**9
        assert not node.pending
        assert (node.remote_key, node.remote_size) == ("dir/f.bin", len(data))
        assert node.etag == env.store.head("dir/f.bin").etag
        assert_synced(fs)


async def test_an_empty_new_file_becomes_an_empty_object(env: Env) -> None:
    async with env.mount() as fs:
        node = await write_file(fs, "empty", b"", mode=0o600)
        await fs.flusher.sync_all()
        assert env.objects() == {"empty": b""}
        assert int(env.metadata("empty")["mode"]) == stat.S_IFREG | 0o600
        assert not node.pending
        assert_synced(fs)


async def test_rewrites_before_the_upload_coalesce_into_the_last_version(
    env: Env, virtual_clock: MockClock
) -> None:
    async with env.mount(writeback_delay=0.3) as fs:
        fh, node = await fs.create(1, "f", 0o644, os.O_RDWR, 0, 0)
        for i in range(5):
            await fs.write(fh, 0, f"version {i}".encode())
        fs.release(fh)
        await fs.flusher.sync_all()
        assert env.objects() == {"f": b"version 4"}
        assert len(env.called("put")) == 1, "one upload for the five writes"
        assert not node.pending


def apply_write(model: bytearray, offset: int, data: bytes) -> None:
    if offset > len(model):
        model.extend(bytes(offset - len(model)))
    model[offset : offset + len(data)] = data


def apply_truncate(model: bytearray, size: int) -> None:
    del model[size:]
    model.extend(bytes(size - len(model)))


@pytest.mark.parametrize("start", ["new-file", "store-object"])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_writes_and_truncates_match_a_bytearray_model(env: Env, seed: int, start: str) -> None:
    """Random writes (sparse, unaligned, across blocks), truncates and reads through one
    handle; with "store-object" the file starts as a 5 MiB object none of which is cached."""
    rng = random.Random(seed)
    model = bytearray()
    if start == "store-object":
        model[:] = pattern(5 * MiB + 333, seed=seed + 100)
        env.put("f", bytes(model))
    # metadata_ttl=0: the second mount lists the store again (see test_journal_and_remount.py
    # for a remount within the TTL).
    async with env.mount(metadata_ttl=0) as fs:
        if start == "store-object":
            node = await resolve(fs, "f")
            fh, _ = await fs.open(node.ino, os.O_RDWR)
        else:
            fh, node = await fs.create(1, "f", 0o644, os.O_RDWR, 0, 0)
        for step in range(80):
            roll = rng.random()
            if roll < 0.15:
                size = rng.choice([0, rng.randint(0, 4 * MiB), MiB, 2 * MiB + 1])
                await fs.setattr(node.ino, size=size, fh=fh)
                apply_truncate(model, size)
            elif roll < 0.3:
                # Read a random window back through the handle.
                offset = rng.randint(0, len(model) + 10)
                length = rng.randint(1, 2 * MiB)
                assert await fs.read(fh, offset, length) == bytes(model[offset : offset + length]), step
            else:
                offset = rng.choice([rng.randint(0, 4 * MiB), rng.randint(0, 8) * MiB, len(model)])
                data = rng.randbytes(rng.choice([1, rng.randint(1, 5000), rng.randint(1, 1_500_000)]))
                assert await fs.write(fh, offset, data) == len(data)
                apply_write(model, offset, data)
            assert node.size == len(model), step
        assert await fs.read(fh, 0, 1 << 30) == bytes(model)
        fs.release(fh)
        await fs.flusher.sync_all()
        assert env.objects() == {"f": bytes(model)}
        assert await read_path(fs, "f") == bytes(model)

    # And a new mount (same cache) reads the same bytes.
    async with env.mount(metadata_ttl=0) as fs:
        assert await read_path(fs, "f") == bytes(model)


async def test_a_sparse_write_leaves_a_hole_of_zeros(env: Env) -> None:
    async with env.mount() as fs:
        fh, node = await fs.create(1, "sparse", 0o644, os.O_RDWR, 0, 0)
        await fs.write(fh, 3 * MiB + 17, b"tail")
        assert node.size == 3 * MiB + 21
        assert await fs.read(fh, MiB, 10) == bytes(10)
        assert await fs.read(fh, 3 * MiB + 15, 100) == b"\0\0tail"
        fs.release(fh)
    assert env.objects() == {"sparse": bytes(3 * MiB + 17) + b"tail"}


async def test_truncate_down_then_up_shows_zeros_not_the_old_bytes(env: Env) -> None:
    async with env.mount() as fs:
        data = pattern(3 * MiB, seed=4)
        fh, node = await fs.create(1, "f", 0o644, os.O_RDWR, 0, 0)
        await fs.write(fh, 0, data)
        await fs.setattr(node.ino, size=MiB + 100, fh=fh)
        assert node.size == MiB + 100
        await fs.setattr(node.ino, size=2 * MiB + 5, fh=fh)
        expected = data[: MiB + 100] + bytes(MiB - 95)
        assert await fs.read(fh, 0, 1 << 30) == expected
        fs.release(fh)
    assert env.objects() == {"f": expected}


async def test_truncating_an_existing_object_keeps_the_bytes_below_the_new_end(env: Env) -> None:
    """The block holding the new end is not cached yet: it must be fetched first."""
    original = pattern(3 * MiB + 10, seed=5)
    env.put("blob", original)
    async with env.mount() as fs:
        ino = await ino_of(fs, "blob")
        await fs.setattr(ino, size=MiB + MiB // 2)  # never read: a truncate without a handle
        await fs.setattr(ino, size=2 * MiB)  # and grow again: zeros, not the old bytes
        expected = original[: MiB + MiB // 2] + bytes(MiB // 2)
        assert await read_all(fs, ino) == expected
    assert env.objects() == {"blob": expected}


@pytest.mark.parametrize("existing", [False, True], ids=["local-file", "store-object"])
async def test_open_with_o_trunc_empties_the_file(env: Env, existing: bool) -> None:
    old = pattern(2 * MiB + 3, seed=6)
    if existing:
        env.put("f", old)
    async with env.mount() as fs:
        if not existing:
            await write_file(fs, "f", old)
            await fs.flusher.sync_all()
            assert env.objects() == {"f": old}
        ino = await ino_of(fs, "f")
        fh, keep_cache = await fs.open(ino, os.O_WRONLY | os.O_TRUNC)
        assert not keep_cache, "the kernel must drop its pages of the old data"
        assert fs.node(ino).size == 0
        await fs.write(fh, 0, b"short")
        fs.release(fh)
        assert await read_all(fs, ino) == b"short"
    assert env.objects() == {"f": b"short"}


async def test_two_handles_on_one_file_see_each_others_writes(env: Env) -> None:
    async with env.mount() as fs:
        fh1, node = await fs.create(1, "f", 0o644, os.O_RDWR, 0, 0)
        await fs.write(fh1, 0, b"aaaaaaaaaa")
        fh2, _ = await fs.open(node.ino, os.O_RDWR)
        await fs.write(fh2, 5, b"BB")
        assert await fs.read(fh1, 0, 100) == b"aaaaaBBaaa"
        fs.release(fh1)
        await fs.write(fh2, 10, b"!")
        fs.release(fh2)
    assert env.objects() == {"f": b"aaaaaBBaaa!"}


async def test_overwriting_an_uploaded_file_uploads_the_new_bytes(env: Env) -> None:
    async with env.mount() as fs:
        node = await write_file(fs, "f", b"first version")
        await fs.flusher.sync_all()
        first_etag = node.etag
        fh, _ = await fs.open(node.ino, os.O_WRONLY)
        await fs.write(fh, 0, b"FIRST")
        fs.release(fh)
        assert node.pending
        await fs.flusher.sync_all()
        assert env.objects() == {"f": b"FIRST version"}
        assert node.etag != first_etag and not node.pending
        assert_synced(fs)


async def test_a_write_during_the_upload_makes_the_file_due_again(env: Env) -> None:
    """The upload reads the cache file while the file changes: the file is marked clean only
    if it did not change meanwhile, so the store ends with the last version."""
    started, proceed = threading.Event(), threading.Event()
    real_put = env.store.put

    def slow_put(*args: object, **kwargs: object) -> object:
        if not started.is_set():
            started.set()
            assert proceed.wait(5)
        return real_put(*args, **kwargs)  # type: ignore[arg-type]

    env.store.put = slow_put  # type: ignore[method-assign,assignment]
    async with env.mount(writeback_delay=0.01) as fs:
        fh, node = await fs.create(1, "f", 0o644, os.O_RDWR, 0, 0)
        await fs.write(fh, 0, b"version 1")
        with trio.fail_after(5):
            while not started.is_set():
                await trio.sleep(0.005)
        await fs.write(fh, 0, b"VERSION 2, longer")  # while version 1 is being uploaded
        proceed.set()
        fs.release(fh)
        await fs.flusher.sync_all()
        assert not node.pending
    assert env.objects() == {"f": b"VERSION 2, longer"}


async def test_the_flusher_retries_until_the_store_is_back(env: Env) -> None:
    env.offline = True
    async with env.mount(writeback_delay=0) as fs:
        node = await write_file(fs, "f", b"patience")
        with trio.fail_after(5):
            while not fs.flusher.failed_attempts:
                await trio.sleep(0.01)
        assert node.pending and fs.journal.read_all().nodes
        env.offline = False
        await fs.flusher.sync_all()
        assert not node.pending and fs.journal.read_all().nodes == {}
    assert env.objects() == {"f": b"patience"}


async def test_a_big_new_file_goes_up_at_its_last_close_and_a_small_one_waits(env: Env) -> None:
    big, small = pattern(20 * MiB, seed=5), b"small"
    async with env.mount(writeback_delay=30.0, sync=False) as fs:
        await write_file(fs, "small", small)
        node = await write_file(fs, "big", big)
        with trio.fail_after(5):
            while node.pending:
                await trio.sleep(0.01)
        assert env.objects() == {"big": big}, "the small file waits for the write-back delay"

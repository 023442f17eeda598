"""Objects the store held before the mount: listing, attributes, reads and partial rewrites."""

from __future__ import annotations

import os
import stat

import pytest
import trio
from trio.testing import MockClock

from fusestore.cache import BLOCK_SIZE

from .conftest import Env, MiB, ino_of, listdir, pattern, read_all, read_path, resolve

pytestmark = pytest.mark.trio


def s3fs_meta(mode: int, uid: int, gid: int, mtime: str) -> dict[str, str]:
    return {"mode": str(mode), "uid": str(uid), "gid": str(gid), "mtime": mtime}


async def test_objects_are_listed_with_their_sizes_and_attributes(env: Env) -> None:
    env.put("top.txt", b"12345", s3fs_meta(stat.S_IFREG | 0o600, 42, 43, "1700000000.5"))
    env.put("bare", b"no metadata at all")
    env.put("d/inner", pattern(3 * MiB + 7))
    env.put("d/sub/deep", b"x")
    env.put("marked/", b"", s3fs_meta(stat.S_IFDIR | 0o700, 7, 8, "1600000000"))

    async with env.mount(exact_attrs=True) as fs:
        root = await listdir(fs)
        assert sorted(root) == ["bare", "d", "marked", "top.txt"]
        top = root["top.txt"]
        assert (top.size, top.mode, top.uid, top.gid) == (5, stat.S_IFREG | 0o600, 42, 43)
        assert top.mtime_ns == 1_700_000_000_500_000_000
        bare = await resolve(fs, "bare")
        assert bare.size == 18
        assert bare.mode == stat.S_IFREG | 0o644, "the mount's default mode (umask 022)"
        assert (bare.uid, bare.gid) == (fs.settings.uid, fs.settings.gid)
        assert root["d"].is_dir and root["marked"].is_dir
        marked = await resolve(fs, "marked")
        assert (marked.mode, marked.uid, marked.gid) == (stat.S_IFDIR | 0o700, 7, 8)

        d = await listdir(fs, "d")
        assert sorted(d) == ["inner", "sub"]
        assert d["inner"].size == 3 * MiB + 7 and not d["inner"].is_dir
        assert d["sub"].is_dir
        assert (await resolve(fs, "d/sub/deep")).size == 1
        assert await fs.lookup(1, "missing") is None
        assert await fs.lookup(d["sub"].ino, "nothing-here") is None

        # readdir cookies: resuming from an offset continues where the last call stopped
        fh = await fs.opendir(1)
        first = list(await fs.readdir(fh, 0))
        assert [name for name, _, _ in first] == ["bare", "d", "marked", "top.txt"]
        assert [name for name, _, _ in await fs.readdir(fh, first[1][2])] == ["marked", "top.txt"]
        fs.releasedir(fh)

    # Listing and looking up changed nothing in the store.
    assert env.called("put") == env.called("copy") == env.called("delete_many") == []


@pytest.mark.parametrize("chunk", [4096, 128 * 1024, 3 * MiB])
async def test_a_multi_mib_object_is_read_byte_exactly(env: Env, chunk: int) -> None:
    data = pattern(5 * MiB + 12345, seed=chunk)
    env.put("big", data)
    async with env.mount() as fs:
        ino = await ino_of(fs, "big")
        assert await read_all(fs, ino, chunk) == data
        fetched = env.called("open_range")
        assert fetched, "the data came from the store"
        # Every byte was fetched once, in whole blocks: no block twice, nothing past the end.
        spans = sorted((start, length) for _, start, length, *_ in fetched)
        covered = 0
        for start, length in spans:
            assert start == covered and start % BLOCK_SIZE == 0
            covered += length
        assert covered == len(data)


async def test_random_reads_of_an_uncached_object(env: Env) -> None:
    import random

    data = pattern(6 * MiB + 1, seed=9)
    env.put("big", data)
    rng = random.Random(9)
    async with env.mount() as fs:
        fh, _ = await fs.open(await ino_of(fs, "big"), os.O_RDONLY)
        for _ in range(40):
            offset = rng.randint(0, len(data) + 100)
            length = rng.randint(1, 2 * MiB)
            assert await fs.read(fh, offset, length) == data[offset : offset + length]
        fs.release(fh)


async def test_a_partial_overwrite_of_a_multi_mib_object_uploads_the_merged_bytes(env: Env) -> None:
    original = pattern(5 * MiB + 123, seed=10)
    env.put("data/blob", original)
    async with env.mount() as fs:
        ino = await ino_of(fs, "data/blob")
        fh, _ = await fs.open(ino, os.O_RDWR)
        # Never read first: the untouched parts of the edge blocks must come from the store.
        await fs.write(fh, 2 * MiB - 3, b"ACROSS")  # straddles a block boundary
        await fs.write(fh, 4 * MiB + 10, b"xyz")
        fs.release(fh)
        expected = bytearray(original)
        expected[2 * MiB - 3 : 2 * MiB + 3] = b"ACROSS"
        expected[4 * MiB + 10 : 4 * MiB + 13] = b"xyz"
        assert await read_all(fs, ino) == bytes(expected)
    assert env.objects() == {"data/blob": bytes(expected)}


@pytest.mark.parametrize("size", [5, MiB + 5, 3 * MiB + 333])
async def test_appending_to_an_existing_object_keeps_its_bytes(env: Env, size: int) -> None:
    """`echo more >> file` on an object that is not cached: the block that holds the old
    end must be fetched before the append is written into it."""
    original = pattern(size, seed=size)
    env.put("log", original)
    async with env.mount() as fs:
        ino = await ino_of(fs, "log")
        fh, _ = await fs.open(ino, os.O_WRONLY | os.O_APPEND)
        await fs.write(fh, size, b" appended")
        fs.release(fh)
        assert await read_all(fs, ino) == original + b" appended"
    assert env.objects() == {"log": original + b" appended"}


async def test_a_write_that_starts_past_the_end_keeps_the_old_tail(env: Env) -> None:
    original = pattern(MiB + 100, seed=11)
    env.put("f", original)
    async with env.mount() as fs:
        ino = await ino_of(fs, "f")
        fh, _ = await fs.open(ino, os.O_WRONLY)
        await fs.write(fh, MiB + 200, b"after a gap")
        fs.release(fh)
        assert await read_all(fs, ino) == original + bytes(100) + b"after a gap"
    assert env.objects() == {"f": original + bytes(100) + b"after a gap"}


async def test_an_object_replaced_by_another_client_is_read_anew_after_the_ttl(
    env: Env, virtual_clock: MockClock
) -> None:
    env.put("shared", b"version one")
    async with env.mount(metadata_ttl=0.2) as fs:
        assert await read_path(fs, "shared") == b"version one"
        env.put("shared", b"version two, longer")
        env.put("new", b"also new")
        await trio.sleep(0.25)
        assert (await resolve(fs, "shared")).size == len(b"version two, longer")
        assert await read_path(fs, "shared") == b"version two, longer"
        assert sorted(await listdir(fs)) == ["new", "shared"]


async def test_concurrent_readers_of_one_block_share_one_fetch(env: Env) -> None:
    data = pattern(2 * MiB, seed=12)
    env.put("f", data)
    async with env.mount() as fs:
        ino = await ino_of(fs, "f")
        handles = [(await fs.open(ino, os.O_RDONLY))[0] for _ in range(4)]
        results: list[bytes] = []

        async def reader(fh: int) -> None:
            results.append(await fs.read(fh, 100, 1000))

        async with trio.open_nursery() as nursery:
            for fh in handles:
                nursery.start_soon(reader, fh)
        assert results == [data[100:1100]] * 4
        assert len(env.called("open_range")) == 1
        for fh in handles:
            fs.release(fh)

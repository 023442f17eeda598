"""`dir/` markers found in the store: a mount that only lists and reads sends no write of
any kind, and a marker it did not create or change stays, with the attributes it holds."""

from __future__ import annotations

import os
import stat

import pytest
import trio
from trio.testing import MockClock

from fusestore.core.filesystem import Filesystem

from .conftest import WRITES, Env, listdir, mkdir, read_path, resolve, write_file

pytestmark = pytest.mark.trio

MTIME = 981_158_400  # 2001-02-03, as `touch -d 2001-02-03 d` sets it
MTIME_NS = MTIME * 10**9


def writes(env: Env) -> list[str]:
    return [method for method, _ in env.calls if method in WRITES]


def seed(env: Env) -> dict[str, bytes]:
    """`d/` as an earlier mount left it (default mode and owner, an mtime of its own) and
    one file in it."""
    owner = {"uid": str(os.getuid()), "gid": str(os.getgid())}
    env.put("d/", b"", {"mode": str(stat.S_IFDIR | 0o755), **owner, "mtime": str(MTIME)})
    env.put("d/f", b"hi\n")
    return env.objects()


async def list_and_read(fs: Filesystem) -> None:
    assert sorted(await listdir(fs)) == ["d"]
    assert sorted(await listdir(fs, "d")) == ["f"]
    await fs.getattr((await resolve(fs, "d")).ino)
    assert await read_path(fs, "d/f") == b"hi\n"


@pytest.mark.parametrize(
    "listings, exact_attrs",
    [("with metadata", False), ("bare", False), ("bare", True)],
)
async def test_a_mount_that_only_lists_and_reads_writes_nothing(
    env: Env, listings: str, exact_attrs: bool
) -> None:
    before = seed(env)
    env.bare_listings = listings == "bare"
    async with env.mount(exact_attrs=exact_attrs) as fs:
        await list_and_read(fs)
        d = await resolve(fs, "d")
        # Known from the marker's metadata: a listing's, or the HEAD at the first lookup.
        assert d.mtime_ns == MTIME_NS, "the marker's mtime"
    assert writes(env) == [], "a mount that changed nothing sent a write"
    assert env.objects() == before
    assert env.metadata("d/")["mtime"] == str(MTIME)


@pytest.mark.parametrize("listings", ["with metadata", "bare"])
async def test_a_remount_on_the_same_cache_that_only_lists_writes_nothing(
    env: Env, listings: str, virtual_clock: MockClock
) -> None:
    """The cache remembers the marker's attributes from the mount that wrote them."""
    env.bare_listings = listings == "bare"
    async with env.mount() as fs:
        d = await mkdir(fs, "d")
        await write_file(fs, "d/f", b"hi\n")
        await fs.setattr(d.ino, mtime_ns=MTIME_NS)
    before = env.objects()
    assert set(before) == {"d/", "d/f"}
    assert env.metadata("d/")["mtime"] == str(MTIME)
    for _ in range(2):
        env.calls.clear()
        async with env.mount(metadata_ttl=0.05) as fs:
            await list_and_read(fs)
            assert (await resolve(fs, "d")).mtime_ns == MTIME_NS, "remembered by the cache"
            await trio.sleep(0.1)  # the listings expire: listed again
            await list_and_read(fs)
        assert writes(env) == [], "a mount that changed nothing sent a write"
        assert env.objects() == before
        assert env.metadata("d/")["mtime"] == str(MTIME)


async def test_a_marker_another_tool_made_stays_when_its_directory_is_used(
    env: Env, virtual_clock: MockClock
) -> None:
    """No metadata at all, files in it, listed again and again, read, and a new file made
    in it: the marker is not this mount's to delete."""
    env.put("d/", b"")
    env.put("d/a", b"a")
    env.put("d/sub/b", b"b")
    env.bare_listings = True
    async with env.mount(metadata_ttl=0.05) as fs:
        for _ in range(3):
            assert sorted(await listdir(fs, "d")) == ["a", "sub"]
            assert await read_path(fs, "d/a") == b"a"
            assert await read_path(fs, "d/sub/b") == b"b"
            await trio.sleep(0.1)
        await fs.flusher.sync_all()
        assert writes(env) == []
        await write_file(fs, "d/new", b"n")
    assert env.objects() == {"d/": b"", "d/a": b"a", "d/new": b"n", "d/sub/b": b"b"}
    assert [method for method in writes(env) if method != "put"] == []
    assert [args[0] for args in env.called("put")] == ["d/new"]


async def test_a_marker_this_mount_made_for_an_empty_directory_still_goes(
    env: Env, virtual_clock: MockClock
) -> None:
    """Seen again in a later listing, it is still this mount's own: once the directory has
    an entry, it goes."""
    async with env.mount(metadata_ttl=0.05) as fs:
        await mkdir(fs, "d")
        await fs.flusher.sync_all()
        assert env.objects() == {"d/": b""}
        await trio.sleep(0.1)
        assert await listdir(fs, "d") == {}  # listed again: the marker is in the listing
        await write_file(fs, "d/f", b"x")
    assert env.objects() == {"d/f": b"x"}


async def test_a_renamed_directory_takes_its_marker_and_attributes_along(env: Env) -> None:
    """A rename is a change made here: the marker moves, with what it holds, even when
    the listing did not say what that is."""
    seed(env)
    env.put("d/sub/", b"", {"mtime": "1000000000"})
    env.put("d/sub/g", b"g")
    env.bare_listings = True
    async with env.mount() as fs:
        assert sorted(await listdir(fs, "d")) == ["f", "sub"]
        await fs.rename(1, "d", 1, "e", 0)
    assert env.objects() == {"e/": b"", "e/f": b"hi\n", "e/sub/": b"", "e/sub/g": b"g"}
    assert env.metadata("e/")["mtime"] == str(MTIME)
    assert env.metadata("e/sub/")["mtime"] == "1000000000"
    # `d/` was read at its lookup (a directory's attributes); `d/sub/` is copied unread.
    assert env.called("head") == [("d/",)], (
        "each marker is copied with its own metadata: nothing to read first"
    )
    assert sorted(args[:2] for args in env.called("copy") if args[0].endswith("/")) == [
        ("d/", "e/"),
        ("d/sub/", "e/sub/"),
    ]

"""Times as POSIX says: the ctime changes with every change of a node's attributes, data or
name (chmod, chown, utimensat, write, truncate, rename, unlink of an open file, xattrs) and
with nothing else (reads, lookups, failed calls); the atime changes only by utimensat (the
mount is noatime) and stays when the mtime changes. Both are kept in the metadata (`ctime`,
`atime`, where they are not the mtime), in the journal, and come back on a fresh cache."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from fusestore.core.filesystem import Filesystem
from fusestore.core.nodes import Node
from fusestore.stores import PosixAttrs

from .conftest import Env, listdir, read_path, resolve, write_file

pytestmark = pytest.mark.trio

OLD = 1_500_000_000_123_456_789  # a time long past, in ns, with a fraction
ATIME = 1_400_000_000_987_654_321


async def aged(fs: Filesystem, path: str) -> Node:
    """`path`, with every time set to OLD, as a node whose changes can be told apart."""
    node = await resolve(fs, path)
    node.mtime_ns = node.ctime_ns = OLD
    node.atime_ns = None
    return node


async def test_each_change_sets_the_ctime_to_now(env: Env) -> None:
    async with env.mount() as fs:
        await write_file(fs, "f", b"data")
        changes = {
            "chmod": lambda n: fs.setattr(n.ino, mode=0o600),
            "chown": lambda n: fs.setattr(n.ino, uid=5, gid=6),
            "the kernel's ctime": lambda n: fs.setattr(n.ino, ctime_ns=OLD + 1),
            "utimensat": lambda n: fs.setattr(n.ino, mtime_ns=OLD, atime_ns=OLD),
            "truncate": lambda n: fs.setattr(n.ino, size=2),
            "setxattr": lambda n: fs.attributes.setxattr(n, "user.a", b"1"),
            "rename": lambda n: fs.rename(1, "f", 1, "g", 0),
            "rename back": lambda n: fs.rename(1, "g", 1, "f", 0),
        }
        for what, change in changes.items():
            node = await aged(fs, "g" if what == "rename back" else "f")
            await change(node)
            assert node.ctime_ns > OLD, what
        node = await aged(fs, "f")
        fh, _ = await fs.open(node.ino, os.O_WRONLY)
        await fs.write(fh, 0, b"x")
        assert node.ctime_ns > OLD and node.mtime_ns > OLD, "a write"
        node.ctime_ns = OLD
        await fs.unlink(1, "f")
        assert node.ctime_ns > OLD, "an unlink of an open file (its link count fell)"
        fs.release(fh)


async def test_reads_lookups_and_failed_calls_leave_the_ctime(env: Env) -> None:
    async with env.mount() as fs:
        await write_file(fs, "f", b"data")
        node = await aged(fs, "f")
        assert await read_path(fs, "f") == b"data"
        await fs.getattr(node.ino)
        await fs.lookup(1, "f")
        failing = {
            errno.ENOTSUP: fs.attributes.setxattr(node, "trusted.x", b"1"),
            errno.E2BIG: fs.attributes.setxattr(node, "user.big", b"x" * 2000),
            errno.ENODATA: fs.attributes.removexattr(node, "user.none"),
            errno.EEXIST: fs.mknod(1, "f", stat.S_IFIFO | 0o644, (0, 0)),
        }
        for code, call in failing.items():
            with pytest.raises(OSError) as caught:
                await call
            assert caught.value.errno == code
        assert (node.ctime_ns, node.mtime_ns, node.accessed_ns) == (OLD, OLD, OLD)
        assert node.xattrs is None


async def test_the_atime_changes_only_by_utimensat_and_stays_when_the_mtime_changes(env: Env) -> None:
    async with env.mount() as fs:
        await write_file(fs, "f", b"data")
        node = await aged(fs, "f")
        await read_path(fs, "f")
        assert node.accessed_ns == OLD, "noatime: a read leaves it"
        fh, _ = await fs.open(node.ino, os.O_WRONLY)
        await fs.write(fh, 0, b"x")
        fs.release(fh)
        assert node.mtime_ns > OLD and node.accessed_ns == OLD, "a write changes the mtime alone"
        await fs.setattr(node.ino, atime_ns=ATIME)
        assert node.accessed_ns == ATIME and node.mtime_ns > OLD
        await fs.setattr(node.ino, mtime_ns=OLD)  # utimensat(UTIME_OMIT, t)
        assert (node.accessed_ns, node.mtime_ns) == (ATIME, OLD)


async def test_times_are_kept_in_the_metadata_and_come_back_on_a_fresh_cache(
    env: Env, tmp_path: Path
) -> None:
    async with env.mount() as fs:
        await write_file(fs, "f", b"data")
        await write_file(fs, "same", b"data")
        node = await resolve(fs, "f")
        await fs.setattr(node.ino, mtime_ns=OLD, atime_ns=ATIME)
        ctime = node.ctime_ns
        same = await resolve(fs, "same")
        await fs.setattr(same.ino, mtime_ns=OLD, atime_ns=OLD)
        same.ctime_ns = OLD  # all three equal: nothing but the mtime is written
    meta = env.metadata("f")
    attrs = PosixAttrs.from_metadata(meta)
    assert (attrs.mtime_ns, attrs.atime_ns, attrs.ctime_ns) == (OLD, ATIME, ctime)
    assert meta["mtime"] == "1500000000.123456789" and meta["atime"] == "1400000000.987654321"
    env.cache_dir = tmp_path / "fresh-cache"
    async with env.mount() as fs:
        node = await resolve(fs, "f")
        assert (node.mtime_ns, node.accessed_ns, node.ctime_ns) == (OLD, ATIME, ctime)
        same = await resolve(fs, "same")
        assert (same.mtime_ns, same.accessed_ns, same.ctime_ns) == (OLD, OLD, OLD)


async def test_times_not_uploaded_yet_come_back_from_the_journal(env: Env) -> None:
    async with env.mount(flusher=False) as fs:
        await write_file(fs, "f", b"data")
        node = await resolve(fs, "f")
        await fs.setattr(node.ino, mtime_ns=OLD, atime_ns=ATIME)
        await fs.attributes.setxattr(node, "user.color", b"blue")
        ctime = node.ctime_ns
    assert env.objects() == {}
    async with env.mount() as fs:
        node = await resolve(fs, "f")
        assert (node.mtime_ns, node.accessed_ns, node.ctime_ns) == (OLD, ATIME, ctime)
        assert node.xattrs == {"user.color": b"blue"}
        await fs.flusher.sync_all()
    attrs = PosixAttrs.from_metadata(env.metadata("f"))
    assert (attrs.mtime_ns, attrs.atime_ns, attrs.ctime_ns) == (OLD, ATIME, ctime)
    assert attrs.xattrs == (("user.color", b"blue"),)


async def test_a_directory_keeps_its_times_in_its_marker(env: Env, tmp_path: Path) -> None:
    async with env.mount() as fs:
        d = await fs.mkdir(1, "d", 0o755, 0, 0)
        await fs.setattr(d.ino, mtime_ns=OLD, atime_ns=ATIME)
        ctime = d.ctime_ns
        assert ctime > OLD
    env.cache_dir = tmp_path / "fresh-cache"
    env.bare_listings = True
    async with env.mount() as fs:
        d = await resolve(fs, "d")
        await fs.getattr(d.ino)
        assert (d.mtime_ns, d.accessed_ns, d.ctime_ns) == (OLD, ATIME, ctime)


async def test_a_listing_of_its_marker_never_takes_a_directorys_times_back(env: Env) -> None:
    """A directory's times follow its entries here, though its marker keeps the times it
    was written with: listed again (its marker's older times in the listing), whether the
    new entry is uploaded yet or not, the directory keeps the later times."""
    async with env.mount(metadata_ttl=0.0, writeback_delay=0.0) as fs:
        d = await fs.mkdir(1, "d", 0o755, 0, 0)
        await fs.flusher.sync_all()  # the marker of the empty directory, with its times
        assert "d/" in env.objects()
        made = d.mtime_ns
        await write_file(fs, "d/f", b"data")
        changed = (d.mtime_ns, d.ctime_ns)
        assert changed[0] > made
        await listdir(fs, "d")  # the marker comes with the listing, while f goes up
        assert (d.mtime_ns, d.ctime_ns) == changed
        await fs.flusher.sync_all()
        await listdir(fs, "d")
        assert (d.mtime_ns, d.ctime_ns) == changed
        # A change of its attributes after the entries' is the marker's, and shown as it is.
        await fs.setattr(d.ino, mtime_ns=OLD)
        set_at = d.ctime_ns
        await fs.flusher.sync_all()
        await listdir(fs, "d")
        assert (d.mtime_ns, d.ctime_ns) == (OLD, set_at)


@pytest.mark.parametrize("value", ["yesterday", "--5", "1e9", "99999999999999999999", "", "1.2.3"])
async def test_garbage_times_are_ignored(env: Env, value: str) -> None:
    env.put("f", b"x", {"mtime": "1500000000", "ctime": value, "atime": value})
    async with env.mount() as fs:
        node = await resolve(fs, "f")
        assert node.mtime_ns == node.ctime_ns == node.accessed_ns == 1_500_000_000 * 10**9


@pytest.mark.parametrize(
    ("atime_ns", "mtime_ns"),
    [(-315_619_200 * 10**9, -1), (10_413_792_000 * 10**9 + 5, 253_370_764_800 * 10**9)],
    ids=["before-1970", "after-2262"],
)
async def test_times_before_1970_and_after_2262_survive_a_fresh_cache(
    env: Env, tmp_path: Path, atime_ns: int, mtime_ns: int
) -> None:
    """What utimensat set (`touch -d 1960-01-01`, `touch -d 9999-01-01`) comes back as set:
    the kernel keeps 64-bit seconds, and so does the metadata."""
    async with env.mount() as fs:
        node = await write_file(fs, "f", b"data")
        await fs.setattr(node.ino, atime_ns=atime_ns, mtime_ns=mtime_ns)
    env.cache_dir = tmp_path / "fresh-cache"
    async with env.mount() as fs:
        node = await resolve(fs, "f")
        assert (node.accessed_ns, node.mtime_ns) == (atime_ns, mtime_ns)

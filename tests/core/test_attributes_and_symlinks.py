"""setattr (chmod, chown, utimens) and symlinks, as s3fs-compatible objects and metadata."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from fusestore.core import Kind
from fusestore.stores import PosixAttrs

from .conftest import Env, ino_of, listdir, mkdir, read_path, resolve, write_file

pytestmark = pytest.mark.trio

MTIME_NS = 1_234_567_890_123_456_789


async def test_symlink_and_readlink(env: Env) -> None:
    async with env.mount() as fs:
        await mkdir(fs, "d")
        link = await fs.symlink(await ino_of(fs, "d"), "link", "../some/target.txt", 1000, 1001)
        assert link.kind is Kind.SYMLINK and stat.S_ISLNK(link.mode)
        assert link.size == len("../some/target.txt")
        assert await fs.readlink(link.ino) == "../some/target.txt"
        with pytest.raises(OSError) as exc:
            await fs.open(link.ino, os.O_RDONLY)
        assert exc.value.errno == errno.ELOOP
        await fs.flusher.sync_all()
        assert not link.pending

    assert env.objects() == {"d/link": b"../some/target.txt"}
    attrs = PosixAttrs.from_metadata(env.metadata("d/link"))
    assert attrs.mode is not None and stat.S_ISLNK(attrs.mode)
    assert (attrs.uid, attrs.gid) == (1000, 1001)


async def test_a_symlink_survives_a_remount_and_is_read_from_the_store(env: Env) -> None:
    async with env.mount() as fs:
        await fs.symlink(1, "link", "target with spaces/ünïcode", 0, 0)
    env.calls.clear()
    async with env.mount(metadata_ttl=0) as fs:  # a fresh listing, not one this cache holds
        node = await resolve(fs, "link")
        assert node.kind is Kind.SYMLINK
        assert await fs.readlink(node.ino) == "target with spaces/ünïcode"


async def test_an_s3fs_symlink_written_by_another_tool_is_a_symlink(env: Env) -> None:
    env.put("s3fs-link", b"/absolute/target", {"mode": str(stat.S_IFLNK | 0o777)})
    async with env.mount() as fs:
        entries = await listdir(fs)
        assert entries["s3fs-link"].kind is Kind.SYMLINK
        assert await fs.readlink(entries["s3fs-link"].ino) == "/absolute/target"
        await write_file(fs, "regular", b"")
        with pytest.raises(OSError) as exc:
            await fs.readlink(await ino_of(fs, "regular"))
        assert exc.value.errno == errno.EINVAL


async def test_chmod_and_utimens_of_a_clean_file_upload_metadata_only(env: Env) -> None:
    data = b"data that must not be uploaded again" * 1000
    env.put("f", data, {"mode": str(stat.S_IFREG | 0o644), "uid": "1", "gid": "2", "mtime": "1600000000"})
    async with env.mount() as fs:
        ino = await ino_of(fs, "f")
        node = await fs.setattr(ino, mode=stat.S_IFREG | 0o600, mtime_ns=MTIME_NS)
        assert node.mode == stat.S_IFREG | 0o600 and node.mtime_ns == MTIME_NS
        assert node.pending
        await fs.flusher.sync_all()
        assert not node.pending

    assert env.objects() == {"f": data}
    attrs = PosixAttrs.from_metadata(env.metadata("f"))
    assert (attrs.mode, attrs.uid, attrs.gid, attrs.mtime_ns) == (stat.S_IFREG | 0o600, 1, 2, MTIME_NS)
    assert attrs.atime_ns == 1600000000 * 10**9, "the access time stays (the mount is noatime)"
    assert attrs.ctime_ns is not None and attrs.ctime_ns > attrs.atime_ns, "the change time is now"
    assert [args[:2] for args in env.called("copy")] == [("f", "f")], "a copy onto itself"
    assert env.called("put") == env.called("start_multipart") == []
    assert env.called("open_range") == [], "nor downloaded"
    assert env.called("delete_many") == []


async def test_chown_of_a_clean_file(env: Env) -> None:
    env.put("f", b"x")
    async with env.mount() as fs:
        await fs.setattr(await ino_of(fs, "f"), uid=4321, gid=8765)
    attrs = PosixAttrs.from_metadata(env.metadata("f"))
    assert (attrs.uid, attrs.gid) == (4321, 8765)
    assert attrs.mode == stat.S_IFREG | 0o644
    assert env.objects() == {"f": b"x"}
    assert env.called("put") == []


async def test_setattr_of_a_dirty_file_goes_up_with_its_data(env: Env) -> None:
    async with env.mount() as fs:
        node = await write_file(fs, "f", b"new data")
        await fs.setattr(node.ino, mode=0o751, mtime_ns=MTIME_NS)
        await fs.flusher.sync_all()
        assert [args[0] for args in env.called("put")] == ["f"]
        assert env.called("copy") == []
    attrs = PosixAttrs.from_metadata(env.metadata("f"))
    assert (attrs.mode, attrs.mtime_ns) == (stat.S_IFREG | 0o751, MTIME_NS)
    assert env.objects() == {"f": b"new data"}


async def test_chmod_of_a_directory_is_kept_in_its_marker(env: Env) -> None:
    env.put("d/f", b"x")
    async with env.mount() as fs:
        d = await fs.setattr(await ino_of(fs, "d"), mode=0o700, mtime_ns=MTIME_NS)
        assert d.mode == stat.S_IFDIR | 0o700
    assert set(env.objects()) == {"d/", "d/f"}
    attrs = PosixAttrs.from_metadata(env.metadata("d/"), directory=True)
    assert attrs.mode == stat.S_IFDIR | 0o700
    async with env.mount(metadata_ttl=0) as fs:
        assert (await resolve(fs, "d")).mode == stat.S_IFDIR | 0o700
        assert await read_path(fs, "d/f") == b"x"


async def test_utimens_on_an_open_file_being_written(env: Env) -> None:
    async with env.mount() as fs:
        fh, node = await fs.create(1, "f", 0o644, os.O_WRONLY, 0, 0)
        await fs.write(fh, 0, b"abc")
        await fs.setattr(node.ino, mtime_ns=MTIME_NS)
        fs.release(fh)
    assert PosixAttrs.from_metadata(env.metadata("f")).mtime_ns == MTIME_NS
    assert env.objects() == {"f": b"abc"}

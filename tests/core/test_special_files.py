"""Special files (FIFOs, sockets, character and block devices) are empty objects whose
`x-amz-meta-mode` carries the type bits and, for a device, `x-amz-meta-rdev` its number,
as s3fs stores them; they come back as what they are after a remount on a fresh cache,
from a listing that carries metadata and from one that does not (S3's: the first lookup
reads the metadata, as for a symlink)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from fusestore.cache import CacheDir, inspector
from fusestore.core import Kind

from .conftest import Env, resolve

pytestmark = pytest.mark.trio

SPECIAL = {
    "fifo": (stat.S_IFIFO | 0o640, 0, Kind.FIFO),
    "sock": (stat.S_IFSOCK | 0o755, 0, Kind.SOCKET),
    "tty": (stat.S_IFCHR | 0o620, os.makedev(4, 1), Kind.CHAR_DEVICE),
    "disk": (stat.S_IFBLK | 0o660, os.makedev(8, 16), Kind.BLOCK_DEVICE),
}


async def _make(env: Env) -> None:
    async with env.mount() as fs:
        for name, (mode, rdev, _) in SPECIAL.items():
            node = await fs.mknod(1, name, mode, (1000, 100), rdev)
            assert node.mode == mode and node.rdev == rdev and node.size == 0


async def test_each_special_file_is_an_empty_object_whose_metadata_says_what_it_is(env: Env) -> None:
    await _make(env)
    objects = env.objects()
    for name, (mode, rdev, _) in SPECIAL.items():
        assert objects[name] == b""
        meta = env.metadata(name, without_token=True)
        assert meta["mode"] == str(mode) and meta["uid"] == "1000" and meta["gid"] == "100"
        assert meta.get("rdev") == (str(rdev) if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else None)


@pytest.mark.parametrize("bare", [False, True], ids=["listed-with-metadata", "s3-listing"])
async def test_special_files_come_back_as_what_they_are_on_a_fresh_cache(
    env: Env, tmp_path: Path, bare: bool
) -> None:
    await _make(env)
    env.cache_dir = tmp_path / "fresh-cache"
    env.bare_listings = bare
    async with env.mount() as fs:
        for name, (mode, rdev, kind) in SPECIAL.items():
            node = await resolve(fs, name)
            assert (node.kind, node.mode, node.rdev, node.uid, node.gid) == (kind, mode, rdev, 1000, 100)


async def test_a_special_file_renamed_and_chmodded_keeps_its_type(env: Env, tmp_path: Path) -> None:
    await _make(env)
    async with env.mount() as fs:
        await fs.rename(1, "tty", 1, "tty2", 0)
        node = await resolve(fs, "tty2")
        await fs.setattr(node.ino, mode=0o600)  # the kernel sends the permission bits
    env.cache_dir = tmp_path / "fresh-cache"
    async with env.mount() as fs:
        node = await resolve(fs, "tty2")
        assert node.kind is Kind.CHAR_DEVICE and node.mode == stat.S_IFCHR | 0o600
        assert node.rdev == os.makedev(4, 1)
        assert "tty" not in env.objects()


async def test_a_fifo_mode_on_an_object_with_data_is_ignored(env: Env) -> None:
    """Garbage metadata: only an empty object can be a special file (anything else keeps
    its data readable, as a file)."""
    env.put("odd", b"data", {"mode": str(stat.S_IFIFO | 0o644), "rdev": "12"})
    async with env.mount() as fs:
        node = await resolve(fs, "odd")
        assert node.kind is Kind.FILE and node.rdev == 0


async def test_mknod_of_a_regular_or_directory_mode_here_is_refused(env: Env) -> None:
    async with env.mount() as fs:
        for mode in (stat.S_IFDIR | 0o755, stat.S_IFREG | 0o644):
            with pytest.raises(OSError) as caught:
                await fs.mknod(1, "x", mode, (0, 0))
            assert caught.value.errno == errno.EINVAL


async def test_a_special_file_not_uploaded_yet_comes_back_from_the_journal(env: Env) -> None:
    """Made by a mount that stopped before its upload (as after kill -9): the next mount
    replays it with its type and device number, and uploads it."""
    async with env.mount(flusher=False) as fs:
        await fs.mknod(1, "tty", stat.S_IFCHR | 0o620, (0, 5), os.makedev(4, 7))
    assert "tty" not in env.objects()
    # `fusestore cache show` counts it among the files with changes not in the store.
    cache = CacheDir.for_store(env.store.to_url(), str(env.cache_dir)).path
    assert inspector.describe(cache).pending_files == 1
    assert [item.kind for item in inspector.pending_items(cache)] == ["chardev"]
    async with env.mount() as fs:
        node = fs.ns.node_at("tty")
        assert node is not None and node.kind is Kind.CHAR_DEVICE and node.rdev == os.makedev(4, 7)
        await fs.flusher.sync_all()
    assert env.objects()["tty"] == b""
    assert env.metadata("tty", without_token=True)["rdev"] == str(os.makedev(4, 7))

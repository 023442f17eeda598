"""Attributes of objects known only from an S3 listing (which carries no metadata): no
HEAD per file on lookup unless `exact_attrs` (or the object is small enough to be a
symlink: see test_listed_symlinks), and never a stored attribute lost by a change made
without having read it."""

from __future__ import annotations

import os
import stat

import pytest

from .conftest import Env, ino_of, listdir, read_path, resolve

pytestmark = pytest.mark.trio

STORED = {"mode": str(stat.S_IFREG | 0o600), "uid": "42", "gid": "43", "mtime": "1700000000"}


def body(i: int) -> bytes:
    """Bigger than any symlink: its lookup reads no metadata unless `exact_attrs`."""
    return (b"data %d " % i).ljust(5000, b".")


def seed(env: Env, count: int = 20) -> None:
    for i in range(count):
        env.put(f"d/f{i:02}", body(i), STORED)
    env.bare_listings = True


async def test_stat_of_listed_files_sends_one_listing_and_no_head(env: Env) -> None:
    seed(env)
    async with env.mount(sync=False) as fs:
        d = await ino_of(fs, "d")
        for i in range(20):
            node = await fs.lookup(d, f"f{i:02}")
            assert node is not None
            node = await fs.getattr(node.ino)
            assert node.size == len(body(i))
            assert node.mode == stat.S_IFREG | 0o644, "the mount's defaults until the object is read"
            assert node.mtime_ns == int(env.real["head"](f"d/f{i:02}").mtime * 1e9), "Last-Modified"
    assert len(env.called("list")) == 2  # the root, then d/
    assert env.called("head") == [("d/",)]  # the directory's marker, at its lookup: no file


async def test_exact_attrs_heads_each_object_once(env: Env) -> None:
    seed(env, 5)
    async with env.mount(exact_attrs=True, sync=False) as fs:
        d = await ino_of(fs, "d")
        for _ in range(2):
            for i in range(5):
                node = await fs.lookup(d, f"f{i:02}")
                assert node is not None
                assert (node.mode, node.uid, node.gid) == (stat.S_IFREG | 0o600, 42, 43)
                assert node.mtime_ns == 1_700_000_000 * 10**9
    assert len(env.called("head")) == 5 + 1  # each file, and d/'s marker (absent)


async def test_chmod_of_a_listed_file_keeps_its_stored_owner_and_mtime(env: Env) -> None:
    seed(env, 1)
    async with env.mount() as fs:
        node = await resolve(fs, "d/f00")
        await fs.setattr(node.ino, mode=0o640)
        assert (node.uid, node.gid) == (42, 43), "read from the object before the change"
    changed = env.metadata("d/f00", without_token=True, without_times=True)
    assert changed == {**STORED, "mode": str(stat.S_IFREG | 0o640)}


async def test_rewriting_a_listed_file_keeps_its_stored_mode_and_owner(env: Env) -> None:
    seed(env, 1)
    async with env.mount() as fs:
        node = await resolve(fs, "d/f00")
        fh, _ = await fs.open(node.ino, os.O_WRONLY | os.O_TRUNC)
        await fs.write(fh, 0, b"new bytes")
        fs.flush(fh)
        fs.release(fh)
    metadata = env.metadata("d/f00")
    assert (metadata["mode"], metadata["uid"], metadata["gid"]) == (STORED["mode"], "42", "43")
    assert env.objects()["d/f00"] == b"new bytes"


async def test_renaming_listed_files_keeps_their_metadata_without_reading_it(env: Env) -> None:
    seed(env, 10)
    async with env.mount() as fs:
        await fs.rename(1, "d", 1, "moved", 0)
        assert sorted(await listdir(fs, "moved")) == [f"f{i:02}" for i in range(10)]
        assert await read_path(fs, "moved/f03") == body(3)
    assert sorted(env.objects()) == [f"moved/f{i:02}" for i in range(10)]
    assert all(env.metadata(f"moved/f{i:02}") == STORED for i in range(10))
    # Only the directory's marker is looked for, at its lookup (no listing of the root
    # carries a directory's attributes): none of the files.
    assert env.called("head") == [("moved/",)], "a copy keeps the source's metadata: nothing to read first"
    copies = env.called("copy")
    assert len(copies) == 10

"""Changes made while the flusher's upload of the same node is in flight."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
import trio

from fusestore.core import Filesystem

from .conftest import Env, ino_of, listdir, mkdir, write_file

pytestmark = pytest.mark.trio


class GatedPut:
    """The store's first `put` waits, once it is called, until the test lets it go on."""

    def __init__(self, env: Env) -> None:
        self.started = threading.Event()
        self.proceed = threading.Event()
        inner = env.store.put

        def gated(*args: Any, **kwargs: Any) -> Any:
            if not self.started.is_set():
                self.started.set()
                assert self.proceed.wait(5), "the test never let the upload go on"
            return inner(*args, **kwargs)

        env.store.put = gated  # type: ignore[method-assign]

    async def wait_until_started(self) -> None:
        with trio.fail_after(5):
            while not self.started.is_set():
                await trio.sleep(0.005)


async def make(fs: Filesystem, kind: str, name: str) -> None:
    if kind == "file":
        await write_file(fs, name, b"data")
    else:
        await mkdir(fs, name)


@pytest.mark.parametrize("kind", ["file", "directory"])
async def test_removed_while_its_first_upload_is_in_flight(env: Env, kind: str) -> None:
    """unlink/rmdir of a new entry whose object (or `dir/` marker) is being written: the
    object the upload leaves behind must be deleted too."""
    gate = GatedPut(env)
    async with env.mount(writeback_delay=0) as fs:
        await make(fs, kind, "x")
        await gate.wait_until_started()
        if kind == "file":
            await fs.unlink(1, "x")
        else:
            await fs.rmdir(1, "x")
        gate.proceed.set()
        await fs.flusher.sync_all()
        assert await fs.lookup(1, "x") is None
    assert env.objects() == {}


@pytest.mark.parametrize("kind", ["file", "directory"])
async def test_renamed_while_its_first_upload_is_in_flight(env: Env, kind: str) -> None:
    gate = GatedPut(env)
    async with env.mount(writeback_delay=0) as fs:
        await make(fs, kind, "x")
        await gate.wait_until_started()
        await fs.rename(1, "x", 1, "y", 0)
        gate.proceed.set()
    assert env.objects() == ({"y": b"data"} if kind == "file" else {"y/": b""})


async def test_rm_r_of_a_tree_with_the_flusher_running(env: Env) -> None:
    """`rm -r` as a shell runs it, while the flusher uploads and deletes as fast as it can:
    directories emptied on the way must not come back, and no rmdir may fail."""
    for key in ("t/a", "t/b/c", "t/b/d/e", "t/b/d/", "t/b/f", "t/g/h"):
        env.put(key, b"x")
    async with env.mount(writeback_delay=0) as fs:

        async def remove(path: str) -> None:
            for name, node in (await listdir(fs, path)).items():
                if node.is_dir:
                    await remove(f"{path}/{name}")
                    await fs.rmdir(await ino_of(fs, path), name)
                else:
                    await fs.unlink(await ino_of(fs, path), name)

        await remove("t")
        await fs.rmdir(1, "t")
        assert await listdir(fs) == {}
    assert env.objects() == {}


async def test_chmod_of_a_directory_while_its_marker_is_written(env: Env) -> None:
    """The marker in flight carries the old mode; the new one must follow it to the store."""
    gate = GatedPut(env)
    async with env.mount(writeback_delay=0) as fs:
        d = await mkdir(fs, "d", mode=0o700)
        await gate.wait_until_started()
        await fs.setattr(d.ino, mode=0o40751)
        gate.proceed.set()
    assert env.objects() == {"d/": b""}
    assert int(env.metadata("d/")["mode"]) == 0o40751


async def test_attributes_changed_while_the_data_goes_up_cost_a_copy_not_a_new_upload(env: Env) -> None:
    """The kernel sends a file's mtime when it is closed, often while its upload is in
    flight: the data is in the store, only the attributes follow."""
    gate = GatedPut(env)
    async with env.mount(writeback_delay=0) as fs:
        node = await write_file(fs, "f", b"the data")
        await gate.wait_until_started()
        await fs.setattr(node.ino, mtime_ns=1_500_000_000_000_000_000)
        gate.proceed.set()
        await fs.flusher.sync_all()
        assert not node.data_dirty and not node.meta_dirty
    assert env.objects() == {"f": b"the data"}
    assert len(env.called("put")) == 1, "the data went up twice"
    assert len(env.called("copy")) == 1
    assert env.metadata("f")["mtime"] == "1500000000"


async def test_data_changed_while_it_goes_up_is_uploaded_again(env: Env) -> None:
    gate = GatedPut(env)
    async with env.mount(writeback_delay=0) as fs:
        node = await write_file(fs, "f", b"old data")
        await gate.wait_until_started()
        fh, _ = await fs.open(node.ino, os.O_WRONLY)
        await fs.write(fh, 0, b"new")
        fs.release(fh)
        gate.proceed.set()
        await fs.flusher.sync_all()
    assert env.objects() == {"f": b"new data"}
    assert len(env.called("put")) == 2

"""A change the store refuses for good (a key it cannot hold) is parked: kept in the cache
and the journal with its reason, logged once, not retried until it changes, and it never
holds up a sync."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import trio

from fusestore.cache import inspector
from fusestore.stores import InvalidKey

from .conftest import Env, read_all, resolve, write_file

pytestmark = pytest.mark.trio

NAME = "line\nbreak.txt"


def refuse_newlines(env: Env) -> list[str]:
    """Make the store refuse every write to a key holding a newline, as moto does; returns
    the list the refused keys are appended to."""
    refused: list[str] = []

    def wrap(method: str, key_at: int) -> None:
        inner: Callable[..., Any] = getattr(env.store, method)

        def refusing(*args: Any, **kwargs: Any) -> Any:
            key = args[key_at]
            if "\n" in key:
                refused.append(key)
                raise InvalidKey(f"test: the store does not accept the key {key!r}", key=key)
            return inner(*args, **kwargs)

        setattr(env.store, method, refusing)

    wrap("put", 0)
    wrap("start_multipart", 0)
    wrap("copy", 1)
    return refused


async def test_a_key_the_store_refuses_is_parked_and_sync_finishes(env: Env) -> None:
    refused = refuse_newlines(env)
    async with env.mount(sync=False) as fs:
        await write_file(fs, NAME, b"kept in the cache")
        await write_file(fs, "fine.txt", b"uploaded")
        with trio.fail_after(5):  # before: retried with backoff until the unmount timeout
            await fs.flusher.sync_all()
        await trio.sleep(1.0)  # no retry comes later either
        assert refused == [NAME], "tried once, then left alone"
        assert env.objects() == {"fine.txt": b"uploaded"}
        [line] = fs.flusher.parked.lines()
        assert repr("/" + NAME) in line and "does not accept" in line and "\n" not in line
        assert fs.flusher.progress()["not_uploadable"] == 1

    items = inspector.pending_items(env.cache_dir)
    [item] = [item for item in items if item.key == NAME]
    assert item.kind == "file" and item.data
    assert item.not_uploadable is not None and "does not accept" in item.not_uploadable
    assert item.summary().startswith("NOT UPLOADABLE")
    info = inspector.describe(env.cache_dir)
    assert info.not_uploadable == 1 and info.pending_files == 1


async def test_a_parked_file_goes_up_once_renamed_or_changed(env: Env) -> None:
    refused = refuse_newlines(env)
    async with env.mount(sync=False) as fs:
        await write_file(fs, NAME, b"first")
        with trio.fail_after(5):
            await fs.flusher.sync_all()
        assert refused == [NAME]
        node = await resolve(fs, NAME)
        fh, _ = await fs.open(node.ino, os.O_WRONLY)
        await fs.write(fh, 0, b"FIRST")  # a change makes it eligible again: tried again
        fs.release(fh)
        with trio.fail_after(5):
            await fs.flusher.sync_all()
        assert refused == [NAME, NAME]

    # The next mount tries once more (the store may take it now), then parks it again.
    async with env.mount(sync=False) as fs:
        with trio.fail_after(5):
            await fs.flusher.sync_all()
        assert refused == [NAME, NAME, NAME]
        await fs.rename(1, NAME, 1, "renamed.txt", 0)
        with trio.fail_after(5):
            await fs.flusher.sync_all()
        assert not fs.flusher.parked.lines()
    assert env.objects() == {"renamed.txt": b"FIRST"}
    assert inspector.describe(env.cache_dir).pending is False


async def test_a_parked_rename_does_not_hold_up_a_new_file_at_its_old_name(env: Env) -> None:
    """`mv f $'bad\\nname'` is parked (the copy is refused); the object at `f` stays its
    source. A new `f` must still go up: the parked node keeps a local copy of its data
    and lets go of the object, rather than the new file waiting for a move that never
    comes (it was rescheduled every 50 ms, and no sync ended)."""
    refused = refuse_newlines(env)
    async with env.mount(sync=False) as fs:
        await write_file(fs, "f", b"the old bytes")
        with trio.fail_after(5):
            await fs.flusher.sync_all()
        await fs.rename(1, "f", 1, NAME, 0)
        with trio.fail_after(5):
            await fs.flusher.sync_all()
        assert refused == [NAME]
        await write_file(fs, "f", b"x")
        with trio.fail_after(5):
            await fs.flusher.sync_all()
        assert env.objects() == {"f": b"x"}
        parked = await resolve(fs, NAME)
        assert await read_all(fs, parked.ino) == b"the old bytes"
        assert fs.flusher.parked.lines() and fs.flusher.progress()["not_uploadable"] == 1
        env.calls.clear()
        await trio.sleep(0.5)
        assert env.calls == [], "nothing is retried in a loop"

    # Its bytes are in the cache and the journal, no longer in the object: renamed to a
    # name the store takes, it goes up from there.
    async with env.mount(sync=False) as fs:
        with trio.fail_after(5):
            await fs.flusher.sync_all()
        await fs.rename(1, NAME, 1, "g", 0)
        with trio.fail_after(5):
            await fs.flusher.sync_all()
    assert env.objects() == {"f": b"x", "g": b"the old bytes"}

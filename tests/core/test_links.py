"""Stores linked into a mount's tree: shown at their path, read-only (EROFS; EXDEV for a
rename in or out), hiding the mount's own keys there, linked and unlinked while mounted."""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator

import pytest

from fusestore.stores import AccessDenied, open_store
from fusestore.stores.links import LinkedStores
from fusestore.stores.memory import MemoryStore

from .conftest import Env, ino_of, listdir, mkdir, read_path, write_file

pytestmark = pytest.mark.trio


@pytest.fixture
def other() -> Iterator[MemoryStore]:
    name = f"linked-{uuid.uuid4().hex[:12]}"
    store: MemoryStore = open_store(f"memory://{name}")  # type: ignore[assignment]
    store.put("a.txt", b"A in the linked store")
    store.put("d/b.txt", b"B")
    yield store
    MemoryStore.forget(name)


def objects(store: MemoryStore) -> dict[str, bytes]:
    with store._backend.lock:
        return {key: obj.data for key, obj in store._backend.objects.items()}


async def fails(code: int, call: object) -> None:
    with pytest.raises(OSError) as failure:
        await call  # type: ignore[misc]
    assert failure.value.errno == code, failure.value


async def test_a_linked_store_reads_and_refuses_every_change(env: Env, other: MemoryStore) -> None:
    env.put("mine.txt", b"mine")
    env.put("datasets/hidden", b"the mount's own key under the link's path")
    linked = LinkedStores(env.store)
    linked.add("/datasets/", other)
    before = objects(other)
    async with env.mount(store=linked) as fs:
        assert sorted(await listdir(fs)) == ["datasets", "mine.txt"]
        assert sorted(await listdir(fs, "datasets")) == ["a.txt", "d"], "the mount's own key is hidden"
        assert await read_path(fs, "datasets/d/b.txt") == b"B"
        linked_dir, a = await ino_of(fs, "datasets"), await ino_of(fs, "datasets/a.txt")
        await fails(errno.EROFS, fs.create(linked_dir, "new", 0o644, os.O_WRONLY, 0, 0))
        await fails(errno.EROFS, fs.mkdir(linked_dir, "x", 0o755, 0, 0))
        await fails(errno.EROFS, fs.symlink(linked_dir, "l", "a.txt", 0, 0))
        await fails(errno.EROFS, fs.unlink(linked_dir, "a.txt"))
        await fails(errno.EROFS, fs.rmdir(1, "datasets"))
        await fails(errno.EROFS, fs.setattr(a, mode=0o600))
        await fails(errno.EROFS, fs.open(a, os.O_WRONLY))
        await fails(errno.EROFS, fs.open(a, os.O_RDONLY | os.O_TRUNC))
        await fails(errno.EROFS, fs.rename(linked_dir, "a.txt", linked_dir, "z", 0))
        await fails(errno.EXDEV, fs.rename(linked_dir, "a.txt", 1, "a.txt", 0))
        await fails(errno.EXDEV, fs.rename(1, "mine.txt", linked_dir, "mine.txt", 0))
        await fails(errno.EXDEV, fs.rename(1, "datasets", 1, "elsewhere", 0))
        await write_file(fs, "still-writable.txt", b"the rest of the mount is not read-only")
    assert objects(other) == before
    assert env.objects()["datasets/hidden"] == b"the mount's own key under the link's path"
    assert env.objects()["still-writable.txt"] == b"the rest of the mount is not read-only"
    with pytest.raises(AccessDenied):
        linked.put("datasets/sneaky", b"")


async def test_a_store_is_linked_and_unlinked_on_a_live_mount(env: Env, other: MemoryStore) -> None:
    env.put("mine.txt", b"mine")
    env.put("lib/own.txt", b"own")
    async with env.mount(store=LinkedStores(env.store), writeback_delay=30) as fs:
        assert sorted(await listdir(fs)) == ["lib", "mine.txt"]
        assert sorted(await listdir(fs, "lib")) == ["own.txt"]
        await fs.link_store("/lib/data", other)
        assert sorted(await listdir(fs, "lib")) == ["data", "own.txt"]
        assert await read_path(fs, "lib/data/a.txt") == b"A in the linked store"
        with pytest.raises(ValueError, match="overlaps the link at /lib/data"):
            await fs.link_store("lib/data/deeper", other)
        await mkdir(fs, "busy")
        await write_file(fs, "busy/x", b"not uploaded yet")
        with pytest.raises(ValueError, match="holds changes not uploaded yet"):
            await fs.link_store("busy", other)
        assert await fs.unlink_store("lib/data/") is other
        assert sorted(await listdir(fs, "lib")) == ["own.txt"]
        with pytest.raises(ValueError, match="nothing is linked at /lib/data"):
            await fs.unlink_store("lib/data")


async def test_listings_above_a_link_show_it_on_their_first_page_only(env: Env, other: MemoryStore) -> None:
    for i in range(5):
        env.put(f"top/f{i}", b"")
    linked = LinkedStores(env.store)
    linked.add("top/zz/link", other)
    first = linked.list("top/", "/", None, max_keys=3)
    assert first.prefixes == ["top/zz/"] and first.next_token is not None
    rest = linked.list("top/", "/", first.next_token, max_keys=3)
    assert rest.prefixes == [] and [o.key for o in rest.objects] == ["top/f3", "top/f4"]
    assert linked.list("top/zz/", "/").prefixes == ["top/zz/link/"]
    assert [o.key for o in linked.list("top/zz/link/", "/").objects] == ["top/zz/link/a.txt"]
    assert linked.head("top/zz/link/d/b.txt").key == "top/zz/link/d/b.txt"


async def test_a_nested_link_hides_only_what_lies_under_its_path(env: Env, other: MemoryStore) -> None:
    for key in ("a/keep.txt", "a/b/keep.txt", "a/b/c/hidden.txt", "a/b/c", "x.txt"):
        env.put(key, b"own")
    linked = LinkedStores(env.store)
    linked.add("a/b/c", other)
    recursive = sorted(info.key for info in linked.iter_objects(""))
    assert recursive == ["a/b/keep.txt", "a/keep.txt", "x.txt"], "the link's own keys are not in it"
    top = linked.list("a/b/", "/")
    assert [o.key for o in top.objects] == ["a/b/keep.txt"] and top.prefixes == ["a/b/c/"]
    async with env.mount(store=linked) as fs:
        assert sorted(await listdir(fs, "a/b")) == ["c", "keep.txt"]
        assert sorted(await listdir(fs, "a/b/c")) == ["a.txt", "d"]
    assert env.objects()["a/b/c/hidden.txt"] == b"own"

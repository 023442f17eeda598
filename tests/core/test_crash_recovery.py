"""A daemon killed, or an answer lost, just after the store took a write: the next mount
(or the retry) knows its own write, makes no conflict copy, brings back no name it moved
or removed, and leaves no multipart upload behind.

A kill is simulated as in test_journal_and_remount: the cache directory is copied the
moment the store has taken the write (as `kill -9` would leave it), and the next mount
uses the copy; the old mount's later calls never reach the store.
"""

from __future__ import annotations

import builtins
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import trio

from fusestore.stores import PendingUpload, Store, StoreUnavailable
from fusestore.stores.wrapper import WrappedStore
from fusestore.writeback.landings import TOKEN

from .conftest import Env, MiB, ino_of, listdir, pattern, read_path, write_file
from .test_journal_and_remount import crash_copy

pytestmark = pytest.mark.trio

#: moto's `Initiated` for every multipart upload, whatever the time.
MOTO_INITIATED = 1289422113.0


class KilledAfter(WrappedStore):
    """`inner`, until the first call of `operation` has been made: then the daemon counts as
    killed. The cache is copied as it is at that moment, and this call and every later
    one fail without reaching the store. `hold` (set by the test) keeps that call from
    being made until the test lets it go."""

    def __init__(self, inner: Store, env: Env, into: Path, operation: str) -> None:
        super().__init__(inner)
        self.env, self.into, self.operation = env, into, operation
        self.killed = threading.Event()
        self.waiting = threading.Event()  # the call is held
        self.hold: threading.Event | None = None
        self._lock = threading.Lock()

    def _gate(self, operation: str) -> None:
        if self.killed.is_set():
            raise StoreUnavailable("test: the daemon is dead")
        if operation == self.operation and self.hold is not None:
            self.waiting.set()
            self.hold.wait(10)

    def _after(self, operation: str) -> None:
        if operation != self.operation:
            return
        with self._lock:
            if not self.killed.is_set():
                crash_copy(self.env, self.into)
                self.killed.set()
        raise StoreUnavailable("test: killed before the answer was read")

    def put(self, key: str, body: Any, metadata: Mapping[str, str] | None = None, **conditions: Any) -> str:
        self._gate("put")
        etag = super().put(key, body, metadata, **conditions)
        self._after("put")
        return etag

    def start_multipart(self, key: str, metadata: Mapping[str, str] | None = None) -> str:
        self._gate("start_multipart")
        upload_id = super().start_multipart(key, metadata)
        self._after("start_multipart")
        return upload_id

    def put_part(self, key: str, upload_id: str, number: int, body: Any) -> Any:
        self._gate("put_part")
        part = super().put_part(key, upload_id, number, body)
        self._after("put_part")
        return part

    def complete_multipart(self, key: str, upload_id: str, parts: Any, **conditions: Any) -> str:
        self._gate("complete_multipart")
        return super().complete_multipart(key, upload_id, parts, **conditions)

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self._gate("abort_multipart")
        super().abort_multipart(key, upload_id)

    def copy(self, src: str, dst: str, metadata: Any = None, **kwargs: Any) -> str:
        self._gate("copy")
        etag = super().copy(src, dst, metadata, **kwargs)
        self._after("copy")
        return etag

    def delete_many(self, keys: Any, etags: Any = None) -> None:
        self._gate("delete_many")
        super().delete_many(keys, etags)

    def head(self, key: str) -> Any:
        self._gate("head")
        return super().head(key)

    def list(self, *args: Any, **kwargs: Any) -> Any:
        self._gate("list")
        return super().list(*args, **kwargs)

    def list_multipart(self, prefix: str = "") -> builtins.list[PendingUpload]:
        self._gate("list_multipart")
        return super().list_multipart(prefix)


class MotoClock(WrappedStore):
    """`inner`, reporting moto's fixed `Initiated` time for every multipart upload."""

    def list_multipart(self, prefix: str = "") -> builtins.list[PendingUpload]:
        return [u._replace(initiated=MOTO_INITIATED) for u in super().list_multipart(prefix)]


async def until(event: threading.Event) -> None:
    with trio.fail_after(10):
        while not event.is_set():
            await trio.sleep(0.01)


def conflict_copies(env: Env) -> list[str]:
    return [key for key in env.objects() if ".conflict-" in key]


async def write_new_version_until_killed(env: Env, dying: Any, existing: bool) -> None:
    """Write "the new version" of `f` (over the old one, as long, or as a new file) on a
    mount through `dying`, until the daemon counts as killed."""
    async with env.mount(store=dying, sync=False) as fs:
        if existing:
            fh, _ = await fs.open(await ino_of(fs, "f"), os.O_WRONLY)
            await fs.write(fh, 0, b"the new version")
            fs.release(fh)
        else:
            await write_file(fs, "f", b"the new version")
        await until(dying.killed)


# -- item: a write that landed just before the kill is not another client's ------------------


@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "overwrite"])
async def test_an_upload_that_landed_just_before_a_kill_makes_no_conflict_copy(
    env: Env, tmp_path: Path, existing: bool
) -> None:
    if existing:
        env.put("f", b"the old version")
    dying = KilledAfter(env.store, env, tmp_path / "after-kill", "put")
    await write_new_version_until_killed(env, dying, existing)
    assert env.objects() == {"f": b"the new version"}, "the write landed before the kill"

    async with env.mount() as fs:
        await fs.flusher.sync_all()
        assert fs.flusher.conflicts == 0
        assert sorted(await listdir(fs)) == ["f"]
        assert await read_path(fs, "f") == b"the new version"
        assert fs.flusher.progress()["conflict_copies"] == []
    assert env.objects() == {"f": b"the new version"}


@pytest.mark.parametrize("change", ["rename", "unlink"])
async def test_a_file_moved_or_removed_while_its_upload_landed_is_not_brought_back(
    env: Env, tmp_path: Path, change: str
) -> None:
    """The upload of `a` is under way when `a` is renamed to `b` (or removed); the store
    takes it and the daemon is killed before it hears so. The old name never comes back:
    not in the listing after the remount, nor in the store after the sync."""
    dying = KilledAfter(env.store, env, tmp_path / "after-kill", "put")
    dying.hold = threading.Event()
    async with env.mount(store=dying, sync=False) as fs:
        await write_file(fs, "a", b"contents of a")
        await until(dying.waiting)  # the PUT of `a` is on its way
        if change == "rename":
            await fs.rename(1, "a", 1, "b", 0)
        else:
            await fs.unlink(1, "a")
        dying.hold.set()
        await until(dying.killed)
    assert env.objects() == {"a": b"contents of a"}, "the upload of the old name landed"

    expected = {"b": b"contents of a"} if change == "rename" else {}
    async with env.mount() as fs:
        assert sorted(await listdir(fs)) == sorted(expected)
        await fs.flusher.sync_all()
        assert sorted(await listdir(fs)) == sorted(expected)
        assert fs.flusher.conflicts == 0
    assert env.objects() == expected


async def test_a_directory_holding_an_unsettled_upload_still_lists_before_it_is_settled(
    env: Env, tmp_path: Path
) -> None:
    """`d/x` goes up while it is renamed away, and the daemon is killed once the store took
    it. Until the next mount has asked about that upload, `d/x` is hidden from listings,
    but `d` itself (which holds other objects) must not be: no name that exists is ever
    shown as absent, and the root's listing is kept for the TTL."""
    env.put("d/a", b"a")
    dying = KilledAfter(env.store, env, tmp_path / "after-kill", "put")
    dying.hold = threading.Event()
    async with env.mount(store=dying, sync=False) as fs:
        await write_file(fs, "d/x", b"contents of x")
        await until(dying.waiting)  # the PUT of `d/x` is on its way
        await fs.rename(await ino_of(fs, "d"), "x", 1, "x", 0)
        await fs.persist()
        dying.hold.set()
        await until(dying.killed)
    assert env.objects() == {"d/a": b"a", "d/x": b"contents of x"}

    async with env.mount(flusher=False) as fs:
        assert fs.flusher.landings.unsettled, "not settled yet: the flusher is not running"
        assert sorted(await listdir(fs)) == ["d", "x"]
        assert sorted(await listdir(fs, "d")) == ["a"]
        async with env.flushing(fs):
            pass
        assert sorted(await listdir(fs)) == ["d", "x"]
        assert fs.flusher.conflicts == 0
    assert env.objects() == {"d/a": b"a", "x": b"contents of x"}


@pytest.mark.parametrize("metadata", ["known", "not-known"])
async def test_a_name_renamed_again_while_its_copy_landed_is_not_brought_back(
    env: Env, tmp_path: Path, metadata: str
) -> None:
    """`mv a b` is a copy in the store; while it goes, `mv b c`. The store takes the copy
    to `b` and the daemon is killed before it hears so: `b` never appears. A copy of an
    object whose metadata the mount never read keeps that metadata (no token): it is
    recognised by its source's etag."""
    env.put("a", b"contents of a", {"mode": "33188"})
    env.bare_listings = metadata == "not-known"
    dying = KilledAfter(env.store, env, tmp_path / "after-kill", "copy")
    dying.hold = threading.Event()
    async with env.mount(store=dying, sync=False) as fs:
        await fs.rename(1, "a", 1, "b", 0)
        await until(dying.waiting)  # the copy to `b` is on its way
        await fs.rename(1, "b", 1, "c", 0)
        dying.hold.set()
        await until(dying.killed)
    assert env.objects() == {"a": b"contents of a", "b": b"contents of a"}

    async with env.mount() as fs:
        assert sorted(await listdir(fs)) == ["c"]
        await fs.flusher.sync_all()
        assert sorted(await listdir(fs)) == ["c"]
    assert env.objects() == {"c": b"contents of a"}


@pytest.mark.parametrize("how", ["answer-lost", "client-retry"])
async def test_a_lost_answer_to_an_upload_makes_no_conflict_copy(env: Env, how: str) -> None:
    """The store takes a PUT but its answer is lost: the flusher tries again later
    (answer-lost), or the client library repeats the request at once and meets the object
    it has just written (client-retry). Either way it is our own write, not a conflict."""

    class LosesTheFirstAnswer(WrappedStore):
        lost = 0

        def put(self, key: str, body: Any, metadata: Any = None, **conditions: Any) -> str:
            etag = super().put(key, body, metadata, **conditions)
            if self.lost:
                return etag
            self.lost += 1
            if how == "client-retry":
                return super().put(key, body, metadata, **conditions)  # raises: it exists now
            raise StoreUnavailable("test: the answer was lost")

    env.put("old", b"version 1")
    store = LosesTheFirstAnswer(env.store)
    async with env.mount(store=store) as fs:
        await write_file(fs, "new", b"a new file")
        fh, _ = await fs.open(await ino_of(fs, "old"), os.O_WRONLY)
        await fs.write(fh, 0, b"VERSION 2")
        fs.release(fh)
        await fs.flusher.sync_all()
        assert store.lost == 1
        assert fs.flusher.conflicts == 0
        assert sorted(await listdir(fs)) == ["new", "old"]
    assert env.objects() == {"new": b"a new file", "old": b"VERSION 2"}
    assert set(env.metadata("new")) >= {TOKEN}, "each upload carries its token"


class LandsLate(WrappedStore):
    """`inner`, for a daemon killed while the store still works on its PUT: the cache is
    copied at the PUT (the kill), and the PUT lands later, when `land` is called."""

    def __init__(self, inner: Store, env: Env, into: Path) -> None:
        super().__init__(inner)
        self.env, self.into = env, into
        self.killed = threading.Event()
        self.late: tuple[str, bytes, Any, Any] | None = None

    def put(self, key: str, body: Any, metadata: Mapping[str, str] | None = None, **conditions: Any) -> str:
        if self.killed.is_set():
            raise StoreUnavailable("test: the daemon is dead")
        self.late = (key, bytes(body), metadata, conditions)
        crash_copy(self.env, self.into)
        self.killed.set()
        raise StoreUnavailable("test: killed while the store works on the request")

    def land(self) -> None:
        assert self.late is not None
        key, body, metadata, conditions = self.late
        self.inner.put(key, body, metadata, **conditions)


class HeadThen(WrappedStore):
    """`inner`, calling `then` once, just after the first HEAD of `key` was answered
    (found or not)."""

    def __init__(self, inner: Store, key: str, then: Any) -> None:
        super().__init__(inner)
        self.key, self.then = key, then

    def head(self, key: str) -> Any:
        try:
            return super().head(key)
        finally:
            if key == self.key and self.then is not None:
                then, self.then = self.then, None
                then()


@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "overwrite"])
async def test_an_upload_landing_after_the_next_mount_asked_makes_no_conflict_copy(
    env: Env, tmp_path: Path, existing: bool
) -> None:
    """The daemon is killed while the store still works on its PUT (its body all sent);
    the store finishes it only after the next mount asked whether it landed (a HEAD that
    finds the old object). That late object is this mount's own, not another client's:
    the next upload replaces it, and no conflict copy is made."""
    if existing:
        env.put("f", b"the old version")
    dying = LandsLate(env.store, env, tmp_path / "after-kill")
    await write_new_version_until_killed(env, dying, existing)
    assert env.objects() == ({"f": b"the old version"} if existing else {})

    async with env.mount(store=HeadThen(env.store, "f", dying.land)) as fs:
        await fs.flusher.sync_all()
        assert fs.flusher.conflicts == 0
        assert sorted(await listdir(fs)) == ["f"]
        assert await read_path(fs, "f") == b"the new version"
    assert env.objects() == {"f": b"the new version"}


async def test_an_upload_kept_in_mind_as_late_hides_nothing_from_later_mounts(
    env: Env, tmp_path: Path
) -> None:
    """An upload found missing after a kill is kept in mind (the store may still take
    it) also when its file is removed and nothing replaces it, but later mounts neither
    ask about it again nor hide its key: the directory lists as usual from the start."""
    env.put("d/a", b"a")
    dying = LandsLate(env.store, env, tmp_path / "after-kill")
    async with env.mount(store=dying, sync=False) as fs:
        await write_file(fs, "d/b", b"b")
        await until(dying.killed)

    async with env.mount(flusher=False) as fs:
        await fs.unlink(await ino_of(fs, "d"), "b")
        async with env.flushing(fs):
            pass
        assert len(fs.flusher.landings.late) == 1
    env.calls.clear()

    async with env.mount(flusher=False) as fs:
        assert not fs.ns.hidden_keys
        assert sorted(await listdir(fs)) == ["d"]
        assert sorted(await listdir(fs, "d")) == ["a"]
        async with env.flushing(fs):
            pass
    # (a HEAD of the directory's marker `d/` reads its attributes: nothing of the upload)
    assert [args for args in env.called("head") if args != ("d/",)] == [], "nothing asked again"
    assert env.objects() == {"d/a": b"a"}


# -- item: multipart uploads cut by a kill are found by id --------------------------------------

BIG = 65 * MiB  # above the multipart threshold


async def test_an_upload_cut_by_a_kill_is_aborted_by_id_and_anothers_survives(
    env: Env, tmp_path: Path
) -> None:
    """Another client's upload to the same key, started just before ours, is not ours
    (whatever its start time says)."""
    theirs = env.store.start_multipart("big")
    dying = KilledAfter(env.store, env, tmp_path / "after-kill", "put_part")
    data = pattern(BIG, seed=1)
    async with env.mount(store=dying, sync=False) as fs:
        await write_file(fs, "big", data)
        await until(dying.killed)
    assert len(env.store.list_multipart("big")) == 2

    async with env.mount() as fs:
        await fs.flusher.sync_all()
        assert await read_path(fs, "big") == data
    assert [u.upload_id for u in env.store.list_multipart()] == [theirs]
    assert env.objects() == {"big": data}


async def test_an_upload_whose_start_was_not_answered_before_a_kill_is_aborted(
    env: Env, tmp_path: Path
) -> None:
    """The store started the upload, the daemon died before it learnt its id; the server's
    clock says nothing (moto's). Another client's pending upload to that key survives."""
    theirs = env.store.start_multipart("big")
    dying = KilledAfter(env.store, env, tmp_path / "after-kill", "start_multipart")
    data = pattern(BIG, seed=2)
    async with env.mount(store=dying, sync=False) as fs:
        await write_file(fs, "big", data)
        await until(dying.killed)
    assert len(env.store.list_multipart("big")) == 2

    async with env.mount(store=MotoClock(env.store)) as fs:
        await fs.flusher.sync_all()
    assert [u.upload_id for u in env.store.list_multipart()] == [theirs]
    assert env.objects() == {"big": data}


async def test_a_lost_answer_to_a_start_leaves_no_upload_once_synced(env: Env) -> None:
    """The answer to a start is lost and the upload is started again: the first one is
    aborted in the same run (before the sync returns), not left to a next mount."""

    class LosesTheFirstStart(MotoClock):
        lost = 0

        def start_multipart(self, key: str, metadata: Mapping[str, str] | None = None) -> str:
            upload_id = super().start_multipart(key, metadata)
            if not self.lost:
                self.lost += 1
                raise StoreUnavailable("test: the answer was lost")
            return upload_id

    store = LosesTheFirstStart(env.store)
    data = pattern(BIG, seed=3)
    async with env.mount(store=store) as fs:
        await write_file(fs, "big", data)
        await fs.flusher.sync_all()
        assert store.lost == 1
        assert env.store.list_multipart() == []
    assert env.objects() == {"big": data}


async def test_a_remount_with_nothing_else_to_do_aborts_the_orphans_before_its_sync_returns(
    env: Env, tmp_path: Path
) -> None:
    dying = KilledAfter(env.store, env, tmp_path / "after-kill", "put_part")
    dying.hold = threading.Event()
    async with env.mount(store=dying, sync=False) as fs:
        await write_file(fs, "big", pattern(BIG, seed=4))
        await until(dying.waiting)
        await fs.unlink(1, "big")  # removed while it goes up: nothing left to upload
        dying.hold.set()
        await until(dying.killed)
    assert env.store.list_multipart() != []
    async with env.mount(store=MotoClock(env.store)) as fs:
        await fs.flusher.sync_all()
        assert env.store.list_multipart() == []
    assert env.objects() == {}


async def test_an_unconditioned_upload_landing_after_a_newer_one_makes_no_conflict_copy(
    env: Env, tmp_path: Path
) -> None:
    """`rm f` and a new `f`: its PUT replaces whatever the store holds at `f` (no
    condition: the old object is one this mount let go of). The daemon is killed while
    the store works on that PUT; the next mount changes `f` again and uploads it, and
    only then does the store finish the dead daemon's PUT. No condition stops it, so the
    store holds an older version of this mount's own: the next upload of `f` replaces it,
    with no conflict copy."""
    env.put("f", b"another file's old object")
    dying = LandsLate(env.store, env, tmp_path / "after-kill")
    async with env.mount(store=dying, sync=False) as fs:
        await fs.unlink(1, "f")
        await write_file(fs, "f", b"the new version")
        await until(dying.killed)

    async with env.mount() as fs:
        fh, _ = await fs.open(await ino_of(fs, "f"), os.O_WRONLY | os.O_TRUNC)
        await fs.write(fh, 0, b"a newer version")
        fs.release(fh)
        await fs.flusher.sync_all()
        assert env.objects() == {"f": b"a newer version"}
        await trio.to_thread.run_sync(dying.land)  # the dead daemon's PUT, at last
        assert env.objects() == {"f": b"the new version"}
        fh, _ = await fs.open(await ino_of(fs, "f"), os.O_WRONLY | os.O_TRUNC)
        await fs.write(fh, 0, b"the newest version")
        fs.release(fh)
        await fs.flusher.sync_all()
        assert fs.flusher.conflicts == 0
    assert env.objects() == {"f": b"the newest version"}

"""Other clients writing the same keys: every upload is conditioned on the version its
change was based on, and when another client got there first, both versions are kept."""

from __future__ import annotations

import calendar
import os
import threading
from typing import Any

import pytest
import trio

from fusestore.core.filesystem import Filesystem
from fusestore.stores import ObjectInfo, ObjectReader, Store
from fusestore.stores.faulty import FaultyStore
from fusestore.stores.wrapper import WrappedStore
from fusestore.writeback.conditions import PROBE_PREFIX
from fusestore.writeback.conflicts import ConflictNames

from .conftest import Env, GatedPut, ino_of, listdir, read_path, write_file

pytestmark = pytest.mark.trio

HOST = "testhost"


def conflict_copies(env: Env) -> dict[str, bytes]:
    return {key: data for key, data in env.objects().items() if ".conflict-" in key}


async def overwrite(fs: Filesystem, path: str, data: bytes) -> None:
    """Open an existing file, truncate it and write `data` (as `echo > f`)."""
    ino = await ino_of(fs, path)
    fh, _ = await fs.open(ino, os.O_WRONLY)
    await fs.setattr(ino, size=0, fh=fh)
    await fs.write(fh, 0, data)
    fs.flush(fh)
    fs.release(fh)


async def test_conflict_copies_are_named_after_the_host_and_the_time_next_to_the_original() -> None:
    when = calendar.timegm((2026, 11, 30, 18, 5, 9, 0, 0, 0))
    names = ConflictNames(host="hostA")
    assert names.key("dir/report.txt", when) == "dir/report.conflict-hostA-20261130T180509.txt"
    assert names.key("a.tar.gz", when) == "a.tar.conflict-hostA-20261130T180509.gz"
    assert names.key("d/Makefile", when) == "d/Makefile.conflict-hostA-20261130T180509"
    assert names.key(".bashrc", when) == ".bashrc.conflict-hostA-20261130T180509"
    assert names.key("x/y.z/file", when, attempt=2) == "x/y.z/file.conflict-hostA-20261130T180509-2"
    for key in ("report.conflict-hostA-20261130T180509.txt", "Makefile.conflict-b-20261130T180509-2"):
        assert names.is_copy(key), key
    for key in ("report.txt", "report.conflict-notes.txt", "a.conflict-h-2026.txt"):
        assert not names.is_copy(key), key


async def test_the_conflict_copy_name_is_a_template() -> None:
    when = calendar.timegm((2026, 11, 30, 18, 5, 9, 0, 0, 0))
    names = ConflictNames("{stem} (conflict {time} on {host}){ext}", host="laptop")
    assert names.key("docs/plan.odt", when) == "docs/plan (conflict 20261130T180509 on laptop).odt"
    assert names.is_copy("plan (conflict 20261130T180509 on laptop).odt")
    assert not names.is_copy("plan.conflict-laptop-20261130T180509.odt")
    for bad, reason in (
        ("{stem}.conflict{ext}", "must hold"),
        ("{stem}-{time}-{user}", "unknown field"),
        ("conflicts/{stem}-{time}", "no '/'"),
        ("{stem-{time}", "conflict name"),
    ):
        with pytest.raises(ValueError, match=reason):
            ConflictNames(bad)


async def test_a_file_another_client_replaced_since_we_read_it_keeps_both_versions(env: Env) -> None:
    env.put("doc.txt", b"original")
    async with env.mount(flusher=False) as fs:
        fs.flusher.names.host = HOST
        assert await read_path(fs, "doc.txt") == b"original"
        await overwrite(fs, "doc.txt", b"ours")
        env.put("doc.txt", b"theirs")  # another host's upload lands first
        async with env.flushing(fs):
            pass
        assert fs.flusher.conflicts == 1
        assert env.objects()["doc.txt"] == b"theirs", "the other client's version stays at the key"
        copies = conflict_copies(env)
        assert list(copies.values()) == [b"ours"], "this mount's version is kept next to it"
        (copy,) = copies
        assert copy.startswith(f"doc.conflict-{HOST}-") and copy.endswith(".txt")
        # The mount now shows their version, and lists ours beside it.
        node = fs.ns.node_at("doc.txt")
        assert node is not None and not node.pending
        assert await read_path(fs, "doc.txt") == b"theirs"
        assert fs.journal.read_all().nodes == {}
    async with env.mount(metadata_ttl=0) as fs:
        assert set(await listdir(fs)) == {"doc.txt", copy}
        assert await read_path(fs, copy) == b"ours"


async def test_a_new_file_another_client_created_first_keeps_both_versions(env: Env) -> None:
    async with env.mount(flusher=False) as fs:
        fs.flusher.names.host = HOST
        assert await listdir(fs) == {}
        await write_file(fs, "new.bin", b"made here")
        env.put("new.bin", b"made there")
        async with env.flushing(fs):
            pass
        assert fs.flusher.conflicts == 1
        assert env.objects()["new.bin"] == b"made there"
        assert list(conflict_copies(env).values()) == [b"made here"]
        assert await read_path(fs, "new.bin") == b"made there"


async def test_a_file_another_client_deleted_is_created_again_with_our_changes(env: Env) -> None:
    env.put("notes", b"first")
    async with env.mount(flusher=False) as fs:
        await overwrite(fs, "notes", b"changed here")
        env.real["delete_many"](["notes"])  # another client removes it meanwhile
        async with env.flushing(fs):
            pass
        assert fs.flusher.conflicts == 0
    assert env.objects() == {"notes": b"changed here"}, "our data wins over a delete"


async def test_no_conflict_when_nobody_else_wrote(env: Env) -> None:
    env.put("a", b"1")
    async with env.mount() as fs:
        await overwrite(fs, "a", b"2")
        await fs.flusher.sync_all()
        await overwrite(fs, "a", b"3")  # based on our own upload's etag
        await fs.flusher.sync_all()
        await write_file(fs, "b", b"new")
        await fs.flusher.sync_all()
        assert fs.flusher.conflicts == 0
    assert env.objects() == {"a": b"3", "b": b"new"}
    conditioned = [args for name, args in env.calls if name == "put"]
    assert len(conditioned) == 3


async def test_a_descriptor_open_across_a_conflict_goes_on_with_the_conflict_copy(env: Env) -> None:
    env.put("data.log", b"v1\n")
    async with env.mount(flusher=False) as fs:
        fs.flusher.names.host = HOST
        ino = await ino_of(fs, "data.log")
        fh, _ = await fs.open(ino, os.O_WRONLY)
        await fs.write(fh, 3, b"ours\n")
        env.put("data.log", b"theirs\n")
        async with env.flushing(fs):
            pass
        (copy,) = conflict_copies(env)
        assert env.objects()[copy] == b"v1\nours\n"
        # The open descriptor is the conflict copy's now: its writes go there, not over theirs.
        await fs.write(fh, 8, b"more\n")
        fs.flush(fh)
        fs.release(fh)
        assert await read_path(fs, "data.log") == b"theirs\n"
        assert await read_path(fs, copy) == b"v1\nours\nmore\n"
        async with env.flushing(fs):
            pass
        assert fs.flusher.conflicts == 1
    assert env.objects()["data.log"] == b"theirs\n"
    assert env.objects()[copy] == b"v1\nours\nmore\n"
    assert len(conflict_copies(env)) == 1


async def test_the_first_conditioned_upload_probes_the_store_once(env: Env) -> None:
    async with env.mount(probe=True) as fs:
        await write_file(fs, "one", b"1")
        await fs.flusher.sync_all()
        await write_file(fs, "two", b"2")
        await fs.flusher.sync_all()
        assert fs.flusher.conditions_honoured is True
        assert fs.flusher.progress()["conditional_writes"] == "honoured by the store"
    probes = [args[0] for args in env.called("put") if args[0].startswith(PROBE_PREFIX)]
    assert len(probes) == 3 and len(set(probes)) == 1, "three puts of one probe object, once"
    assert env.called("delete_many") == [([probes[0]],)]
    assert env.objects() == {"one": b"1", "two": b"2"}, "the probe object is gone"


async def test_a_store_that_ignores_conditions_is_checked_with_a_head_first(env: Env) -> None:
    env.put("doc.txt", b"original")
    ignoring = FaultyStore(env.store, "put:unconditional=1;complete_multipart:unconditional=1")
    async with env.mount(probe=True, store=ignoring) as fs:
        fs.flusher.names.host = HOST
        assert await read_path(fs, "doc.txt") == b"original"
        await overwrite(fs, "doc.txt", b"ours")
        env.put("doc.txt", b"theirs")
        await write_file(fs, "new.txt", b"ours too")
        env.put("new.txt", b"theirs too")  # created by another client before our upload
        await fs.flusher.sync_all()
        assert fs.flusher.conditions_honoured is False
        assert "IGNORED" in fs.flusher.progress()["conditional_writes"]
        assert fs.flusher.conflicts == 2
        # The probe's two create-only puts and the two copies' ignored their condition; the
        # uploads at the keys were never sent (the HEAD before each found theirs).
        assert ignoring.injected["unconditional"] == 4
    objects = env.objects()
    assert objects["doc.txt"] == b"theirs" and objects["new.txt"] == b"theirs too"
    assert sorted(data for key, data in objects.items() if ".conflict-" in key) == [b"ours", b"ours too"]
    assert "doc.txt" in [args[0] for args in env.called("head")]


async def test_conflict_copies_in_listings_are_reported_until_they_are_gone(env: Env) -> None:
    env.put("d/plan.txt", b"x")
    env.put("d/plan.conflict-otherhost-20261130T180509.txt", b"theirs")
    env.put(f"{PROBE_PREFIX}otherhost-0123", b"")  # another mount's probe, mid-way
    async with env.mount(metadata_ttl=0.2) as fs:
        assert sorted(await listdir(fs)) == ["d"], "probe objects are never shown"
        await listdir(fs, "d")
        assert fs.flusher.conflict_copies() == ["/d/plan.conflict-otherhost-20261130T180509.txt"]
        env.real["delete_many"](["d/plan.conflict-otherhost-20261130T180509.txt"])  # reconciled
        await trio.sleep(0.25)
        await listdir(fs, "d")
        assert fs.flusher.conflict_copies() == []


async def test_a_file_renamed_over_one_still_open_here_is_no_conflict(env: Env) -> None:
    env.put("c", b"old, still open")
    async with env.mount() as fs:
        fh, _ = await fs.open(await ino_of(fs, "c"), os.O_RDONLY)
        await write_file(fs, "a", b"new")
        await fs.rename(1, "a", 1, "c", 0)
        await fs.flusher.sync_all()  # the old object is still read through `fh` meanwhile
        assert await fs.read(fh, 0, 100) == b"old, still open"
        fs.release(fh)
        assert fs.flusher.conflicts == 0
    assert env.objects() == {"c": b"new"}


# -- every stored object is one whole version ----------------------------------------------


class Held(WrappedStore):
    """The store, except that the first `method` call on `key` waits (in its worker thread)
    until the test lets it go: a window, opened at a chosen moment of an upload, in which
    the test changes the file."""

    def __init__(self, inner: Store, method: str, key: str) -> None:
        super().__init__(inner)
        self.method, self.key = method, key
        self.entered, self.released = threading.Event(), threading.Event()

    def _hold(self, method: str, key: str) -> None:
        if (method, key) == (self.method, self.key) and not self.entered.is_set():
            self.entered.set()
            assert self.released.wait(10), "the test never let the call go"

    async def reached(self) -> None:
        assert await trio.to_thread.run_sync(self.entered.wait, 10), f"no {self.method} of {self.key!r}"

    def head(self, key: str) -> ObjectInfo:
        self._hold("head", key)
        return super().head(key)

    def put(self, key: str, body: Any, metadata: Any = None, **conditions: Any) -> str:
        self._hold("put", key)
        return super().put(key, body, metadata, **conditions)

    def open_range(self, key: str, *args: Any) -> ObjectReader:
        self._hold("open_range", key)
        return super().open_range(key, *args)


def version(name: str, size: int) -> bytes:
    """Bytes that say which version they are, and how long it is, all along."""
    head = f"{name}:{size}:".encode()
    return (head * (size // len(head) + 1))[:size]


async def rewrite(fs: Filesystem, path: str, data: bytes, mtime: int) -> None:
    """Truncate, write `data`, set the mtime (as `cp -p` over the file does)."""
    await overwrite(fs, path, data)
    await fs.setattr(await ino_of(fs, path), mtime_ns=mtime * 10**9)


def assert_whole_versions(env: Env, versions: dict[bytes, int]) -> None:
    """Every body the mount ever sent, and every object now stored, is one of `versions`
    whole, stored with that version's mtime."""
    sent = [(args[0], args[1]) for args in env.called("put")]
    assert sent, "nothing was uploaded"
    for key, body in sent:
        whole = bytes(body) in versions
        assert whole, f"{key}: {len(body)} bytes of no version: {bytes(body[:20])!r}"
    for key, data in env.objects().items():
        whole = data in versions
        assert whole, f"{key}: {len(data)} bytes of no version: {data[:20]!r}"
        wanted = versions[data]
        if wanted:
            assert env.metadata(key).get("mtime") == str(wanted), f"{key}: another version's mtime"


async def test_a_conflict_copy_is_one_whole_version_when_the_file_changes_during_its_upload(
    env: Env,
) -> None:
    env.put("f06.dat", b"original")
    held = Held(env.store, "put", "f06.dat")
    first, second, theirs = version("A", 44_049), version("B", 90_000), version("theirs", 5_000)
    async with env.mount(flusher=False, store=held) as fs:
        fs.flusher.names.host = HOST
        assert await read_path(fs, "f06.dat") == b"original"
        await rewrite(fs, "f06.dat", first, mtime=1_000_000)
        env.put("f06.dat", theirs)  # another host's version lands first
        async with env.flushing(fs):
            await held.reached()  # our upload of `first` is on its way (and is refused)
            await rewrite(fs, "f06.dat", second, mtime=2_000_000)
            held.released.set()
        assert env.objects()["f06.dat"] == theirs
        copies = conflict_copies(env)
        assert second in copies.values(), "the last version is kept"
        assert await read_path(fs, "f06.dat") == theirs
    assert_whole_versions(env, {theirs: 0, first: 1_000_000, second: 2_000_000})


async def test_an_upload_never_sends_bytes_written_after_its_size_was_taken(env: Env) -> None:
    env.put("f.dat", b"original")
    # A store that ignores conditions: a HEAD of the key comes between the moment the
    # upload takes the file's size and the moment it reads the bytes.
    held = Held(FaultyStore(env.store, "put:unconditional=1"), "head", "f.dat")
    first, second = version("A", 30_000), version("B", 70_000)
    async with env.mount(flusher=False, store=held) as fs:
        fs.flusher.conditions_honoured = False
        assert await read_path(fs, "f.dat") == b"original"
        await rewrite(fs, "f.dat", first, mtime=1_000_000)
        async with env.flushing(fs):
            await held.reached()
            await rewrite(fs, "f.dat", second, mtime=2_000_000)
            held.released.set()
        assert fs.flusher.conflicts == 0
    assert env.objects() == {"f.dat": second}
    assert_whole_versions(env, {first: 1_000_000, second: 2_000_000})


async def test_a_file_truncated_as_its_upload_starts_goes_up_once_written_again(env: Env) -> None:
    env.put("f.dat", version("O", 2 * 2**20))
    held = Held(env.store, "open_range", "f.dat")
    second = version("B", 50_000)
    async with env.mount(flusher=False, store=held, writeback_delay=5) as fs:
        ino = await ino_of(fs, "f.dat")
        fh, _ = await fs.open(ino, os.O_WRONLY)
        await fs.write(fh, 2 * 2**20, b"appended")  # nothing of the object is cached yet
        fs.release(fh)
        node = fs.ns.node_at("f.dat")
        async with env.flushing(fs):
            fs.flusher.hurry()
            await held.reached()  # the upload fetches the bytes it lacks first
            fh, _ = await fs.open(ino, os.O_WRONLY | os.O_TRUNC)  # meanwhile a rewrite begins
            held.released.set()
            with trio.fail_after(5):
                while node in fs.flusher.running:
                    await trio.sleep(0.01)
            await fs.write(fh, 0, second)
            fs.release(fh)
    assert env.objects() == {"f.dat": second}
    assert [bytes(args[1]) for args in env.called("put")] == [second], "never the truncated file"


async def test_attributes_changed_during_a_conflict_follow_onto_the_copy(env: Env) -> None:
    env.put("f.dat", b"original")
    held = Held(env.store, "head", "f.dat")  # the conflict's look at the key, after the copy
    ours, theirs = version("ours", 3000), version("theirs", 100)
    async with env.mount(flusher=False, store=held) as fs:
        fs.flusher.names.host = HOST
        await rewrite(fs, "f.dat", ours, mtime=1_000_000)
        env.put("f.dat", theirs)
        node = fs.ns.node_at("f.dat")
        async with env.flushing(fs):
            await held.reached()
            await fs.setattr(node.ino, mtime_ns=2_000_000 * 10**9)  # the kernel's mtime at a close
            held.released.set()
        assert fs.flusher.conflicts == 1
    copies = conflict_copies(env)
    assert list(copies.values()) == [ours], "one copy: the same bytes are not kept twice"
    (copy,) = copies
    assert env.metadata(copy)["mtime"] == "2000000", "with the attributes set meanwhile"
    assert env.objects()["f.dat"] == theirs


async def test_a_delete_keeps_the_version_another_client_put_since(env: Env) -> None:
    """`rm` of a file another client rewrote after this mount read it: the delete is of
    the version this mount knew, and theirs stays (it was deleted, with no copy anywhere)."""
    env.put("f", b"init")
    async with env.mount() as fs:
        assert await read_path(fs, "f") == b"init"
        env.put("f", b"from another client")
        await fs.unlink(1, "f")
        await fs.flusher.sync_all()
    assert env.objects() == {"f": b"from another client"}


@pytest.mark.parametrize("what", ["file", "directory"])
async def test_a_rename_keeps_the_version_another_client_put_at_the_old_name(env: Env, what: str) -> None:
    """A rename copies the object to the new name, then deletes the old name. Another
    client that rewrote the old name in between keeps its version there (it was deleted,
    with no copy anywhere); the copy holds the version this mount knew."""
    old, new = ("d/f", "e/f") if what == "directory" else ("f", "g")
    env.put(old, b"init")
    gate = GatedPut(env, "delete_many")
    async with env.mount() as fs:
        assert await read_path(fs, old) == b"init"
        if what == "directory":
            await fs.rename(1, "d", 1, "e", 0)
        else:
            await fs.rename(1, "f", 1, "g", 0)
        await gate.wait_until_started()  # the copy landed, the delete of the old name waits
        env.put(old, b"from another client")
        gate.proceed.set()
        await fs.flusher.sync_all()
    assert env.objects() == {old: b"from another client", new: b"init"}

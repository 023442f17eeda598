"""The local cache: eviction, the dirty limit, and the cache classes on their own."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import stat
from pathlib import Path

import diskcache
import pytest
import trio
from trio.testing import MockClock

from fusestore.cache import BLOCK_SIZE, CacheDir, CacheLocked, Content, ContentStore, Journal
from fusestore.cache import contentstore as contents_module
from fusestore.cache.contentstore import OPEN_FILES, SPARES, SPARES_LOW
from fusestore.cache.recovery import LostFound
from fusestore.service.daemon import raise_open_file_limit

from .conftest import Env, MiB, fill, ino_of, pattern, read_all, read_path, resolve, write_file

# -- eviction ---------------------------------------------------------------------------------


@pytest.mark.trio
async def test_eviction_spares_dirty_and_open_contents_and_goes_least_recently_used(env: Env) -> None:
    objects = {f"o{i}": pattern(2 * MiB, seed=i) for i in range(4)}
    for key, data in objects.items():
        env.put(key, data)
    limit = 6 * MiB
    async with env.mount(cache_size=limit, writeback_delay=30) as fs:  # `dirty` stays dirty
        for key in ("o0", "o1", "o2", "o3"):  # o0 first: the oldest
            assert await read_path(fs, key) == objects[key]
            await trio.sleep(0.01)
        fh, _ = await fs.open(await ino_of(fs, "o0"), os.O_RDONLY)  # o0: pinned, and recent
        assert await fs.read(fh, 0, 10) == objects["o0"][:10]
        dirty = await write_file(fs, "dirty", pattern(MiB, seed=9))
        assert fs.contents.used == 9 * MiB

        by_id = {c.id: c for c in fs.contents.all()}
        pinned = {c.id for c in by_id.values() if c.pins}
        dirty_ids = {c.id for c in by_id.values() if c.dirty}
        assert pinned and dirty_ids
        victims = fs.contents.evict_candidates()
        assert victims
        for victim in victims:
            assert not victim.dirty and not victim.pins
            assert victim.id not in pinned | dirty_ids
        assert fs.contents.used <= limit * 9 // 10
        assert sorted(v.source[0] for v in victims if v.source) == ["o1", "o2"], "least recently used"
        assert fs.contents.evict_candidates() == [], "already under the limit"

        ContentStore.remove_files(victims)
        for victim in victims:
            assert not victim.path.exists()
            # the file goes first: a crash between leaves no file that no record names
            assert fs.index.get(("content", victim.id)) is not None
        fs.contents.forget(victims)
        for victim in victims:
            assert fs.index.get(("content", victim.id)) is None

        # Everything still reads right: evicted data comes back from the store.
        env.calls.clear()
        assert await read_path(fs, "o1") == objects["o1"]
        assert env.called("open_range")
        env.calls.clear()
        assert await read_path(fs, "o3") == objects["o3"]
        assert env.called("open_range") == [], "o3 was kept"
        assert await fs.read(fh, 0, 1 << 30) == objects["o0"]
        fs.release(fh)
        assert await read_all(fs, dirty.ino) == pattern(MiB, seed=9)
    assert env.objects()["dirty"] == pattern(MiB, seed=9)


@pytest.mark.trio
async def test_dirty_data_is_never_evicted_even_over_the_limit(env: Env) -> None:
    async with env.mount(flusher=False, cache_size=MiB) as fs:
        nodes = [await write_file(fs, f"f{i}", pattern(MiB, seed=i)) for i in range(3)]
        assert fs.contents.used == 3 * MiB
        assert fs.contents.evict_candidates() == []
        for i, node in enumerate(nodes):
            assert await read_all(fs, node.ino) == pattern(MiB, seed=i)


# -- the dirty limit -------------------------------------------------------------------------


@pytest.mark.trio
async def test_a_writer_waits_while_dirty_data_is_over_the_limit(env: Env, virtual_clock: MockClock) -> None:
    async with env.mount(flusher=False, dirty_limit=MiB) as fs:
        await write_file(fs, "first", pattern(2 * MiB, seed=1))  # its own bytes never hold it back
        fh, _ = await fs.create(1, "second", 0o644, os.O_WRONLY, 0, 0)

        with trio.move_on_after(0.3) as waited:
            await fs.write(fh, 0, b"y")
        assert waited.cancelled_caught, "the write went through over the dirty limit"

        done = trio.Event()

        async def writer() -> None:
            await fs.write(fh, 0, b"second file")
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await trio.sleep(0.2)
            assert not done.is_set(), "still waiting: nothing was uploaded"
            async with env.flushing(fs):
                with trio.fail_after(3):
                    await done.wait()  # the flusher uploaded `first`: room again
        fs.release(fh)
        async with env.flushing(fs):
            pass
    assert env.objects() == {"first": pattern(2 * MiB, seed=1), "second": b"second file"}


# -- Content ------------------------------------------------------------------------------------


def test_content_missing_runs_fill_and_truncate(tmp_path: Path) -> None:
    size = 5 * BLOCK_SIZE + 10
    content = Content("c", tmp_path / "c", size, base_size=size)
    assert list(content.missing_runs(0, size)) == [(0, 6)]
    assert list(content.missing_runs(BLOCK_SIZE + 1, 1)) == [(1, 1)]
    assert list(content.missing_runs(size, 100)) == []

    content.write(2 * BLOCK_SIZE, b"w" * BLOCK_SIZE)  # block 2, whole
    assert list(content.missing_runs(0, size)) == [(0, 2), (3, 3)]
    start, length = content.fetch_span(3, 3)
    assert (start, length) == (3 * BLOCK_SIZE, 2 * BLOCK_SIZE + 10)

    # A fill never overwrites a block written locally.
    fill(content, 2, b"s" * (2 * BLOCK_SIZE))
    assert content.read(2 * BLOCK_SIZE, 3) == b"www"
    assert content.read(3 * BLOCK_SIZE, 3) == b"sss"
    assert list(content.missing_runs(0, size)) == [(0, 2), (4, 2)]
    assert not content.complete()

    # Truncating forgets the store's bytes past the new end: growing again shows zeros.
    content.truncate(3 * BLOCK_SIZE + 5)
    assert content.base_size == 3 * BLOCK_SIZE + 5
    content.truncate(size)
    assert list(content.missing_runs(3 * BLOCK_SIZE, size)) == []
    assert content.read(4 * BLOCK_SIZE, 10) == bytes(10)
    assert content.boundary_block(BLOCK_SIZE + 7) == (1, 1)
    assert content.boundary_block(2 * BLOCK_SIZE) is None
    content.remove()
    assert not (tmp_path / "c").exists()


def test_content_present_bytes(tmp_path: Path) -> None:
    content = Content("c", tmp_path / "c", 2 * BLOCK_SIZE + 1, base_size=2 * BLOCK_SIZE + 1)
    assert content.present_bytes() == 0
    fill(content, 0, b"x" * BLOCK_SIZE)
    assert content.present_bytes() == BLOCK_SIZE
    fill(content, 1, b"x" * (BLOCK_SIZE + 1))
    assert content.complete() and content.present_bytes() == 2 * BLOCK_SIZE + 1
    content.close()


def test_du_counts_the_stored_base_and_the_blocks_held_past_it(tmp_path: Path) -> None:
    """`stored_or_held`, what st_blocks is made of: the store holds the base whole; past
    it, only the 1 MiB blocks written count, never more than the size."""
    content = Content("c", tmp_path / "c", 0, base_size=0)
    content.truncate(64 * BLOCK_SIZE)
    assert content.stored_or_held() == 0, "a hole made by truncate is held nowhere"
    content.write(32 * BLOCK_SIZE + 10, b"x" * 4096)
    assert content.stored_or_held() == BLOCK_SIZE
    content.now_stored()
    assert content.stored_or_held() == 64 * BLOCK_SIZE, "uploaded: the object has no holes"

    appended = Content("a", tmp_path / "a", BLOCK_SIZE + 5, base_size=BLOCK_SIZE + 5)
    assert appended.stored_or_held() == BLOCK_SIZE + 5, "a clean object counts whole, cached or not"
    appended.write(10 * BLOCK_SIZE, b"tail")
    # The base and the one block written past it: the hole between counts nothing.
    assert appended.stored_or_held() == BLOCK_SIZE + 5 + BLOCK_SIZE
    content.close()
    appended.close()


def test_fetched_bytes_never_replace_a_local_write_whichever_comes_first(tmp_path: Path) -> None:
    """A fetch's thread writes the store's bytes (`store_fetched`), the trio thread marks
    them present after (`fetched`). A local write of the same block before the fetch's
    write keeps its bytes (the block is skipped); one after it replaces them, and the
    late `fetched` changes nothing."""
    content = Content("c", tmp_path / "c", 3 * BLOCK_SIZE, base_size=3 * BLOCK_SIZE)
    content.write(0, b"L" * BLOCK_SIZE)  # before: block 0
    written = content.store_fetched(0, b"s" * (2 * BLOCK_SIZE))
    assert written == BLOCK_SIZE
    content.write(BLOCK_SIZE, b"M" * BLOCK_SIZE)  # after: block 1, before `fetched`
    content.fetched(0, 2, written)
    assert content.read(0, 2) == b"LL" and content.read(BLOCK_SIZE, 2) == b"MM"
    assert list(content.missing_runs(0, content.size)) == [(2, 1)]
    content.close()


def test_fetched_bytes_survive_a_closed_descriptor_and_stop_at_a_truncation(tmp_path: Path) -> None:
    """The content may close its descriptor while a fetch's thread writes (too many open
    files), and the number go to another file: the bytes still reach the cache file, the
    other file stays untouched. Once the file was cut, the store's bytes past the new end
    stay gone (zeros when it grows again); once it was removed, nothing makes it again."""
    content = Content("c", tmp_path / "c", 2 * BLOCK_SIZE, base_size=2 * BLOCK_SIZE)
    old_fd = content.fd
    content.close()
    other_fd = os.open(tmp_path / "other", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert other_fd == old_fd, "the test needs the number reused"
        assert content.store_fetched(0, b"s" * BLOCK_SIZE) == BLOCK_SIZE
        assert os.fstat(other_fd).st_size == 0, "the store's bytes went into another file"
    finally:
        os.close(other_fd)
    content.fetched(0, 1, BLOCK_SIZE)
    assert content.read(BLOCK_SIZE - 2, 2) == b"ss"

    content.truncate(BLOCK_SIZE + BLOCK_SIZE // 2)
    assert content.store_fetched(1, b"t" * BLOCK_SIZE) == BLOCK_SIZE // 2
    assert os.stat(content.path).st_size == BLOCK_SIZE + BLOCK_SIZE // 2
    content.fetched(1, 1, BLOCK_SIZE // 2)
    content.truncate(3 * BLOCK_SIZE)
    assert content.read(BLOCK_SIZE + BLOCK_SIZE // 2 - 1, 2) == b"t\0"
    assert list(content.missing_runs(0, content.size)) == []
    content.remove()
    assert content.store_fetched(0, b"s") == 0
    assert not content.path.exists(), "a removed content's file made again"


def test_a_short_write_leaves_the_block_it_stopped_in_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk took 1.5 of 2 blocks of the store's bytes being overwritten: the second
    block still lacks the store's bytes past the write, so it is still to be fetched."""
    content = Content("c", tmp_path / "c", 3 * BLOCK_SIZE, base_size=3 * BLOCK_SIZE)
    real_pwrite = os.pwrite
    monkeypatch.setattr(
        os, "pwrite", lambda fd, data, offset: real_pwrite(fd, data[: len(data) * 3 // 4], offset)
    )
    assert content.write(0, b"w" * (2 * BLOCK_SIZE)) == 3 * BLOCK_SIZE // 2
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert list(content.missing_runs(0, content.size)) == [(1, 2)]
    fill(content, 1, b"s" * (2 * BLOCK_SIZE))
    assert content.read(BLOCK_SIZE - 1, 2) == b"ws"
    content.close()


def test_holes_last_until_the_burst_of_writes_ends(tmp_path: Path) -> None:
    """A write past the end leaves a hole a lost write cuts the file at, until the burst
    ends (flush, fsync, upload): then the hole is the program's own (a sparse file), and a
    loss never cuts the file below the size it had then."""
    content = Content("c", tmp_path / "c", 0, base_size=0)
    content.write(2 * BLOCK_SIZE, b"tail")
    assert content.lost_write(0, 10) == (0, 0)
    content.settle()
    assert content.holes == []
    assert content.lost_write(0, 10) == (content.size, content.size)
    content.write(4 * BLOCK_SIZE, b"more")  # a new burst: its own hole
    assert content.lost_write(3 * BLOCK_SIZE, 3 * BLOCK_SIZE + 10) == (3 * BLOCK_SIZE, 3 * BLOCK_SIZE)
    content.truncate(BLOCK_SIZE)  # the program's own truncation lowers the floor with it
    assert content.settled_size == BLOCK_SIZE
    content.close()


# -- ContentStore -------------------------------------------------------------------------------


def content_store(tmp_path: Path, limit: int = 10 * MiB) -> tuple[ContentStore, diskcache.Cache]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    index = diskcache.Cache(str(tmp_path / "index"), eviction_policy="none")
    return ContentStore(data, index, limit), index


def test_contents_are_found_by_key_and_etag_and_reloaded(tmp_path: Path) -> None:
    contents, index = content_store(tmp_path)
    a = contents.clean_for("k", '"e1"', 10)
    assert contents.clean_for("k", '"e1"', 10) is a
    a.pins += 1  # read by a handle: kept while another version is cached
    b = contents.clean_for("k", '"e2"', 10)
    assert b is not a, "another version of the object"
    a2 = contents.clean_for("k", '"e1"', 10)
    assert a2 is a
    fill(a2, 0, b"0123456789")
    contents.save(a2, "k", '"e1"')
    a2.close()
    index.close()

    contents, index = content_store(tmp_path)
    again = contents.clean_for("k", '"e1"', 10)
    assert again.id == a2.id and again.complete()
    assert again.read(0, 10) == b"0123456789"
    assert contents.clean_for("k", '"e1"', 11).id != a2.id, "another size: not the same data"
    index.close()


def test_a_content_whose_file_changed_size_is_dropped_on_load(tmp_path: Path) -> None:
    contents, index = content_store(tmp_path)
    c = contents.clean_for("k", '"e"', 100)
    fill(c, 0, b"x" * 100)
    contents.save(c, "k", '"e"')
    c.close()
    index.close()
    os.truncate(c.path, 50)
    contents, index = content_store(tmp_path)
    assert contents.clean_for("k", '"e"', 100).id != c.id
    assert not c.path.exists()
    index.close()


def test_dirty_contents_are_owned_by_the_journal_not_the_index(tmp_path: Path) -> None:
    contents, index = content_store(tmp_path)
    c = contents.clean_for("k", '"e"', 4)
    fill(c, 0, b"abcd")
    contents.make_dirty(c)
    assert index.get(("content", c.id)) is None
    assert contents.dirty_bytes == 4
    assert contents.clean_for("k", '"e"', 4) is not c, "a dirty content mirrors no object"
    orphan = tmp_path / "data" / "orphan"
    orphan.write_bytes(b"left by a crash")
    spare = tmp_path / "data" / "spare"
    spare.write_bytes(b"")
    kept = tmp_path / "data" / "journaled"
    kept.write_bytes(b"named by the journal")
    lost_found = LostFound(tmp_path / "lost+found")
    assert contents.account_for_files({"journaled", c.id}, lost_found) == ["orphan"]
    assert not orphan.exists() and not spare.exists() and kept.exists() and c.path.exists()
    assert (tmp_path / "lost+found" / "orphan").read_bytes() == b"left by a crash", "never deleted"
    contents.register_clean(c, "k", '"e3"')
    assert contents.dirty_bytes == 0
    assert contents.clean_for("k", '"e3"', 4) is c
    index.close()


# -- Journal and CacheDir ---------------------------------------------------------------------


def test_the_journal_persists_records_and_deletes(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    journal.save_node("j1", {"key": "a", "n": 1})
    journal.save_node("j2", {"key": "b", "n": 2})
    journal.save_node("j1", {"key": "a", "n": 3})
    journal.drop_node("j2")
    journal.add_delete("gone")
    journal.add_delete("gone/")
    journal.add_delete("that-version", '"etag-1"')
    journal.drop_delete("gone/")
    journal.close()
    journal = Journal(tmp_path / "journal")
    assert journal.read_all().nodes == {"j1": {"key": "a", "n": 3}}
    assert journal.read_all().deletes == {"gone": None, "that-version": '"etag-1"'}
    assert len(journal) == 3
    journal.close()


def test_a_cache_directory_is_private_and_locked(tmp_path: Path) -> None:
    path = tmp_path / "cache"
    path.mkdir(mode=0o755)
    os.chmod(path, 0o755)
    cache = CacheDir.for_store("memory://one", str(path)).open()
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert stat.S_IMODE((path / "store.json").stat().st_mode) == 0o600
    assert cache.data_dir.is_dir()
    with pytest.raises(CacheLocked):
        CacheDir.for_store("memory://one", str(path)).open()
    cache.close()
    CacheDir.for_store("memory://one", str(path)).open().close()  # unlocked by close()


def test_a_cache_refused_to_another_store_does_not_keep_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "cache"
    CacheDir.for_store("memory://one", str(path)).open().close()
    with pytest.raises(CacheLocked, match="memory://one"):
        CacheDir.for_store("memory://two", str(path)).open()
    # The refused open must not hold the lock: the right store can still open its cache.
    CacheDir.for_store("memory://one", str(path)).open().close()


@pytest.mark.trio
async def test_new_files_take_spare_cache_files_made_ahead_which_go_at_unmount(env: Env) -> None:
    data_dir = env.cache_dir / "data"
    async with env.mount(writeback_delay=60) as fs:
        with trio.fail_after(5):
            while fs.contents.spares_wanted():
                await trio.sleep(0.01)
        spare_files = set(os.listdir(data_dir))
        assert len(spare_files) >= SPARES_LOW
        nodes = [await write_file(fs, f"f{i}", pattern(100, seed=i)) for i in range(SPARES - SPARES_LOW + 1)]
        used = {node.content.id for node in nodes if node.content is not None}
        assert used <= spare_files, "each new file took a spare: none created its own"
        with trio.fail_after(5):  # below SPARES_LOW: a new batch is made
            while len(set(os.listdir(data_dir)) - used) < SPARES_LOW:
                await trio.sleep(0.01)
    assert set(os.listdir(data_dir)) <= used, "the spares left went at unmount"
    async with env.mount() as fs:
        for i in range(len(nodes)):
            assert await read_path(fs, f"f{i}") == pattern(100, seed=i)


def test_spare_cache_files_left_by_a_crash_are_orphans(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    index = diskcache.Cache(str(tmp_path / "index"))
    contents = ContentStore(data_dir, index, limit=MiB)
    contents.add_spares(contents.make_spares(3))
    assert len(os.listdir(data_dir)) == 3
    # a crash: nothing dropped them; the next mount's orphan sweep does
    assert ContentStore(data_dir, index, limit=MiB).account_for_files(set(), LostFound(tmp_path / "lf")) == []
    assert os.listdir(data_dir) == []
    index.close()


@pytest.mark.trio
async def test_cache_files_of_closed_files_are_not_all_kept_open(env: Env) -> None:
    data_dir = str(env.cache_dir / "data")

    def open_cache_files() -> int:
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor
                count += os.path.dirname(os.readlink(f"/proc/self/fd/{fd}")) == data_dir
        return count

    async with env.mount(writeback_delay=60) as fs:
        held = open_cache_files()
        count = OPEN_FILES + 100
        for i in range(count):
            await write_file(fs, f"f{i:04}", pattern(10, seed=i))
        assert open_cache_files() - held <= OPEN_FILES + SPARES, "one descriptor per file written"
        fh, _ = await fs.open((await resolve(fs, "f0000")).ino, os.O_RDONLY)  # opened again
        assert await fs.read(fh, 0, 100) == pattern(10, seed=0)
        fs.release(fh)
    async with env.mount() as fs:
        assert await read_path(fs, f"f{count - 1:04}") == pattern(10, seed=count - 1)


@pytest.mark.trio
async def test_no_cache_file_stays_open_once_the_mount_is_closed(env: Env) -> None:
    """Closing a mount closes every cache file it opened (files written, files read), so
    a process that mounts again and again does not run out of descriptors."""
    data_dir = env.cache_dir / "data"
    env.put("theirs", b"read from the store")

    def open_cache_files() -> list[str]:
        paths = []
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor
                paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        return [path for path in paths if os.path.dirname(path) == str(data_dir)]

    for mount in range(2):
        async with env.mount(writeback_delay=60) as fs:
            for i in range(10):
                await write_file(fs, f"m{mount}-f{i}", pattern(10, seed=i))
            assert await read_path(fs, "theirs") == b"read from the store"
            assert open_cache_files(), "files written and read are kept open while mounted"
        assert open_cache_files() == []


def test_the_daemon_raises_its_open_file_limit_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 512:
        pytest.skip("the hard limit leaves no room to test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    try:
        raised = raise_open_file_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == raised > 512
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_idle_cache_files_are_swept_once_per_batch_even_with_many_held_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More handles open than OPEN_FILES must not make every release scan every content."""
    monkeypatch.setattr(contents_module, "OPEN_FILES", 4)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    index = diskcache.Cache(str(tmp_path / "index"))
    contents = ContentStore(data_dir, index, limit=MiB)
    held = [contents.new() for _ in range(6)]
    for content in held:
        content.pins = 1
        content.ensure_file()
    scans = 0

    class Counting(dict[str, Content]):
        def values(self):  # type: ignore[override]
            nonlocal scans
            scans += 1
            return super().values()

    contents._by_id = Counting(contents._by_id)
    for _ in range(40):  # a file written and closed: its handle released
        contents.new().ensure_file()
        contents.close_idle_files()
        assert contents._open_files[0] <= len(held) + 2 * 4
    assert scans <= 40 // 4 + 1, f"{scans} scans for 40 releases"
    assert all(content.is_open for content in held), "a file a handle uses stays open"
    contents.drop_spares()
    for content in list(contents._by_id.values()):
        content.close()
    index.close()


@pytest.mark.parametrize("how", ["discarded", "evicted"])
def test_a_removed_content_never_makes_its_file_again(tmp_path: Path, how: str) -> None:
    """A fetch still under way when its content is dropped (its file removed, or evicted)
    fills a block afterwards: that must fail, not make the cache file again. Such a file is
    named by no record, and a restart after a kill would set it aside as lost changes."""
    contents, index = content_store(tmp_path, limit=BLOCK_SIZE)
    content = contents.clean_for("k", '"e1"', 3 * BLOCK_SIZE)
    fill(content, 0, memoryview(b"x" * 2 * BLOCK_SIZE))
    content.close()
    if how == "discarded":
        contents.forget_object("k", '"e1"')
    else:
        assert contents.evict_candidates() == [content]
        ContentStore.remove_files([content])
        contents.forget([content])
    assert not content.path.exists()
    with pytest.raises(FileNotFoundError):
        fill(content, 2, memoryview(b"y" * BLOCK_SIZE))
    assert not content.path.exists(), "the removed cache file came back"
    contents.save(content, "k", '"e1"')
    assert ("content", content.id) not in index
    index.close()


@pytest.mark.trio
async def test_a_cache_file_cut_short_under_the_mount_reads_as_an_error_not_zeros(env: Env) -> None:
    """The cache file of a file not uploaded yet is cut short by something else while the
    mount runs: a read of the bytes it lost fails with EIO and says why, also once the file
    was closed and opened again. It gave zeros where the data had been, silently."""
    data = os.urandom(200_000)
    async with env.mount(writeback_delay=3600, sync=False) as fs:
        node = await write_file(fs, "a", data)
        content = node.content
        assert content is not None
        os.truncate(content.path, 5000)
        fh, _ = await fs.open(node.ino, os.O_RDONLY)
        try:
            assert await fs.read(fh, 0, 4096) == data[:4096]
            with pytest.raises(OSError) as failed:
                await fs.read(fh, 4096, 8192)
            assert failed.value.errno == errno.EIO
            content.close()  # as the sweep of idle cache files does
            with pytest.raises(OSError) as failed:
                await fs.read(fh, 100_000, 4096)
            assert failed.value.errno == errno.EIO
        finally:
            fs.release(fh)

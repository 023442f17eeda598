"""A cached version nothing can read again goes at once: a newer version of its key landed
(an upload or a copy of this mount's), or the store deleted the key. A handle still
reading it keeps it, byte for byte, until its release; dirty data never goes; a kill
between an upload and the drop loses nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import diskcache
import pytest

from fusestore.cache import ContentStore

from .conftest import Env, MiB, fill, ino_of, pattern, read_path, write_file
from .test_crash_recovery import KilledAfter, until


def data_files(env: Env) -> set[str]:
    """The cache's data files that hold bytes (spare files are empty)."""
    return {path.name for path in env.cache_dir.rglob("data/*") if path.is_file() and path.stat().st_size}


def content_store(tmp_path: Path) -> tuple[ContentStore, diskcache.Cache]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    index = diskcache.Cache(str(tmp_path / "index"), eviction_policy="none")
    return ContentStore(data, index, 10 * MiB), index


# -- the content store alone ----------------------------------------------------------------


def test_a_newer_version_of_a_key_drops_the_older_ones_copy(tmp_path: Path) -> None:
    contents, index = content_store(tmp_path)
    old = contents.clean_for("k", '"e1"', 4)
    fill(old, 0, b"old!")
    new = contents.new(4, 4)
    new.write(0, b"new!")
    contents.register_clean(new, "k", '"e2"')
    assert old.removed and not old.path.exists()
    assert contents.clean_for("k", '"e2"', 4) is new
    assert [c.id for c in contents.all()] == [new.id]
    assert index.get(("content", old.id)) is None
    index.close()


def test_a_version_read_by_a_handle_goes_at_its_last_release(tmp_path: Path) -> None:
    contents, index = content_store(tmp_path)
    old = contents.clean_for("k", '"e1"', 4)
    fill(old, 0, b"old!")
    old.pins += 2  # two handles read it
    contents.register_clean(contents.new(4, 4), "k", '"e2"')
    assert old.read(0, 4) == b"old!"
    old.pins -= 1
    assert old.read(0, 4) == b"old!", "one handle still reads it"
    old.pins -= 1
    assert old.removed and not old.path.exists()
    index.close()


def test_dirty_data_is_never_dropped(tmp_path: Path) -> None:
    """A superseded copy made dirty meanwhile (written through a descriptor still open on
    it) belongs to the journal: neither a newer version nor its last release drops it."""
    contents, index = content_store(tmp_path)
    old = contents.clean_for("k", '"e1"', 4)
    fill(old, 0, b"old!")
    old.pins += 1
    contents.register_clean(contents.new(4, 4), "k", '"e2"')
    contents.make_dirty(old)
    old.write(0, b"mine")
    contents.register_clean(contents.new(4, 4), "k", '"e3"')
    contents.key_deleted("k")
    old.pins -= 1
    assert not old.removed and old.read(0, 4) == b"mine"
    assert contents.is_dirty(old)
    index.close()


def test_a_deleted_key_drops_its_copy_and_a_copied_object_keeps_it(tmp_path: Path) -> None:
    contents, index = content_store(tmp_path)
    a = contents.clean_for("a", '"e1"', 4)
    fill(a, 0, b"aaaa")
    b_old = contents.clean_for("b", '"e0"', 4)
    contents.object_moved(("a", '"e1"'), "b", '"e2"')  # a rename of `a` over `b`: a copy
    assert contents.clean_for("b", '"e2"', 4) is a and a.source == ("b", '"e2"')
    assert b_old.removed, "the version of `b` it replaced"
    contents.key_deleted("a")  # the rename's delete of the old key
    assert not a.removed
    contents.key_deleted("b")
    assert a.removed
    index.close()


# -- through the file system -----------------------------------------------------------------


@pytest.mark.trio
async def test_a_reader_keeps_the_version_it_opened_while_a_newer_one_lands(env: Env) -> None:
    """`f` is saved anew (a temporary file renamed over it) while a handle reads it: the
    handle reads the old bytes to the end, exactly; their cache file goes at its release."""
    old, new = pattern(3 * MiB + 17, seed=1), pattern(2 * MiB + 5, seed=2)
    async with env.mount() as fs:
        await write_file(fs, "f", old)
        await fs.flusher.sync_all()
        before = data_files(env)
        fh, _ = await fs.open(await ino_of(fs, "f"), os.O_RDONLY)
        first = await fs.read(fh, 0, MiB)
        await write_file(fs, "f.tmp", new)
        await fs.rename(1, "f.tmp", 1, "f", 0)
        await fs.flusher.sync_all()
        assert env.objects() == {"f": new}, "the newer version landed"
        rest = [await fs.read(fh, offset, MiB) for offset in range(MiB, len(old), MiB)]
        assert first + b"".join(rest) == old, "the reader read the version it opened"
        assert before <= data_files(env), "kept while a handle reads it"
        fs.release(fh)
        assert len(data_files(env)) == 1 and not before & data_files(env), "dropped at its release"
        assert await read_path(fs, "f") == new


@pytest.mark.trio
async def test_a_rewritten_renamed_or_deleted_file_leaves_one_copy_of_its_live_data(env: Env) -> None:
    async with env.mount() as fs:
        await write_file(fs, "a", b"first")
        await write_file(fs, "b", b"second")
        await fs.flusher.sync_all()
        fh, _ = await fs.open(await ino_of(fs, "a"), os.O_WRONLY | os.O_TRUNC)
        await fs.write(fh, 0, b"first, again")
        fs.release(fh)
        await fs.rename(1, "b", 1, "c", 0)  # a copy, then the delete of `b`
        await write_file(fs, "d", b"gone soon")
        await fs.flusher.sync_all()
        await fs.unlink(1, "d")
        await fs.flusher.sync_all()
        assert len(data_files(env)) == 2, "one cache file for each of a and c"
        calls = len(env.calls)
        assert await read_path(fs, "c") == b"second"
        assert not env.called("get_range")[calls:] and not env.called("open_range")[calls:], (
            "the moved file's data stayed cached"
        )


@pytest.mark.trio
@pytest.mark.parametrize("how", ["in place", "saved over"])
async def test_a_kill_between_an_upload_and_the_drop_loses_nothing(
    env: Env, tmp_path: Path, how: str
) -> None:
    """The daemon is killed once the store took the new version of `f`, before it heard so
    (and so before the older version's copy was dropped). The next mount has the new
    version, reads it whole, and ends with one cache file for `f`."""
    old, new = pattern(MiB + 3, seed=3), pattern(MiB + 9, seed=4)
    async with env.mount() as fs:
        await write_file(fs, "f", old)
    dying = KilledAfter(env.store, env, tmp_path / "after-kill", "put")
    async with env.mount(store=dying, sync=False) as fs:
        if how == "in place":
            fh, _ = await fs.open(await ino_of(fs, "f"), os.O_WRONLY | os.O_TRUNC)
            await fs.write(fh, 0, new)
            fs.release(fh)
        else:
            await write_file(fs, "f.tmp", new)
            await fs.rename(1, "f.tmp", 1, "f", 0)
        await until(dying.killed)
    async with env.mount() as fs:
        assert await read_path(fs, "f") == new
        await fs.flusher.sync_all()
        assert env.objects() == {"f": new}
        assert len(data_files(env)) == 1, "the older version's copy went once the new one landed"
    async with env.mount() as fs:
        calls = len(env.calls)
        assert await read_path(fs, "f") == new
        assert not env.called("get_range")[calls:] and not env.called("open_range")[calls:]


@pytest.mark.trio
async def test_a_rewritten_files_note_in_the_journal_goes_once_it_is_uploaded(env: Env) -> None:
    """A cached copy made dirty is noted in the journal as holding no change to keep (until
    a record names it); once uploaded, the index names it and the note goes (it stayed for
    the mount's life: one per file rewritten)."""
    async with env.mount() as fs:
        await write_file(fs, "f", b"one")
        await fs.flusher.sync_all()
        fh, _ = await fs.open(await ino_of(fs, "f"), os.O_WRONLY | os.O_TRUNC)
        await fs.write(fh, 0, b"two")
        fs.release(fh)
        assert fs.journal.read_all().unlinked, "noted while dirty"
        await fs.flusher.sync_all()
        assert not fs.journal.read_all().unlinked
    async with env.mount() as fs:
        calls = len(env.calls)
        assert await read_path(fs, "f") == b"two"
        assert not env.called("get_range")[calls:] and not env.called("open_range")[calls:]

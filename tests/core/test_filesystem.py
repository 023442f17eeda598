"""The core's POSIX behaviour and its reconciliation with the store, without a kernel."""

from __future__ import annotations

import errno
import os
import random
import stat

import pytest

from fusestore.core import Filesystem

from .conftest import Harness, ino_of, read_file, write_file

MiB = 2**20


def test_create_write_uploads_bytes_and_posix_metadata(harness: Harness) -> None:
    async def body(fs: Filesystem) -> None:
        d = await fs.mkdir(1, "dir", 0o755, 0, 0)
        await write_file(fs, d.ino, "f.txt", b"hello", mode=0o640)

    harness.run(body)
    assert harness.objects() == {"dir/f.txt": b"hello"}
    meta = harness.store.head("dir/f.txt").metadata or {}
    assert int(meta["mode"]) == stat.S_IFREG | 0o640 and meta["uid"] == "0"
    assert len(harness.run(lambda fs: _journal_size(fs))) == 0


async def _journal_size(fs: Filesystem) -> dict[str, object]:
    return fs.journal.nodes()


def test_random_writes_and_truncates_match_a_model(harness: Harness) -> None:
    rng = random.Random(7)
    model = bytearray()

    async def body(fs: Filesystem) -> bytes:
        fh, node = await fs.create(1, "f", 0o644, os.O_RDWR, 0, 0)
        for _ in range(60):
            if rng.random() < 0.2:
                size = rng.randint(0, 3 * MiB)
                await fs.setattr(node.ino, size=size, fh=fh)
                del model[size:]
                model.extend(bytes(size - len(model)))
            else:
                offset = rng.randint(0, 3 * MiB)
                data = rng.randbytes(rng.randint(1, 300_000))
                await fs.write(fh, offset, data)
                if offset > len(model):
                    model.extend(bytes(offset - len(model)))
                model[offset : offset + len(data)] = data
        result = await fs.read(fh, 0, 1 << 30)
        fs.release(fh)
        return result

    assert harness.run(body) == bytes(model)
    assert harness.objects()["f"] == bytes(model)


def test_existing_object_is_listed_read_and_partially_rewritten(harness: Harness) -> None:
    original = random.Random(1).randbytes(5 * MiB + 123)
    harness.store.put("data/blob", original, {})

    async def body(fs: Filesystem) -> bytes:
        ino = await ino_of(fs, "data/blob")
        assert fs.node(ino).size == len(original)
        assert await read_file(fs, ino) == original
        fh, _ = await fs.open(ino, os.O_RDWR)
        await fs.write(fh, 2 * MiB + 10, b"XYZ")
        fs.release(fh)
        return await read_file(fs, ino)

    expected = original[: 2 * MiB + 10] + b"XYZ" + original[2 * MiB + 13 :]
    assert harness.run(body) == expected
    assert harness.objects()["data/blob"] == expected


def test_partial_write_into_an_uncached_object_keeps_the_rest(harness: Harness) -> None:
    original = random.Random(2).randbytes(3 * MiB)
    harness.store.put("blob", original, {})

    async def body(fs: Filesystem) -> None:
        ino = await ino_of(fs, "blob")
        fh, _ = await fs.open(ino, os.O_WRONLY)
        await fs.write(fh, MiB + 5, b"!!")  # never read: the blocks must come from the store
        fs.release(fh)

    harness.run(body)
    assert harness.objects()["blob"] == original[: MiB + 5] + b"!!" + original[MiB + 7 :]


def test_renames_reconcile_the_store(harness: Harness) -> None:
    for key in ("clean", "over", "swap-a", "swap-b", "tree/x/1", "tree/x/2", "tree/3"):
        harness.store.put(key, key.encode(), {})

    async def body(fs: Filesystem) -> None:
        await fs.rename(1, "clean", 1, "moved", 0)  # a clean file: copy + delete
        await write_file(fs, 1, "dirty", b"dirty")
        await fs.rename(1, "dirty", 1, "dirty2", 0)
        await fs.lookup(1, "over")
        await fs.rename(1, "dirty2", 1, "over", 0)  # replaces an existing object
        with pytest.raises(OSError) as exc:
            await fs.rename(1, "moved", 1, "over", 1)  # RENAME_NOREPLACE
        assert exc.value.errno == errno.EEXIST
        await fs.rename(1, "swap-a", 1, "tmp", 0)
        await fs.rename(1, "swap-b", 1, "swap-a", 0)
        await fs.rename(1, "tmp", 1, "swap-b", 0)
        await fs.rename(1, "tree", 1, "forest", 0)  # a directory never listed below its top
        await fs.rename(1, "moved", 1, "clean2", 0)
        await write_file(fs, 1, "moved", b"new file where a moved one was")

    harness.run(body)
    assert harness.objects() == {
        "clean2": b"clean",
        "moved": b"new file where a moved one was",
        "over": b"dirty",
        "swap-a": b"swap-b",
        "swap-b": b"swap-a",
        "forest/x/1": b"tree/x/1",
        "forest/x/2": b"tree/x/2",
        "forest/3": b"tree/3",
    }


def test_mv_away_then_create_at_the_old_name(harness: Harness) -> None:
    harness.store.put("a", b"old a", {})

    async def body(fs: Filesystem) -> None:
        await fs.rename(1, "a", 1, "b", 0)
        await write_file(fs, 1, "a", b"new a")

    harness.run(body)
    assert harness.objects() == {"a": b"new a", "b": b"old a"}


def test_unlinked_open_file_stays_readable(harness: Harness) -> None:
    harness.store.put("gone", b"still here" * 200_000, {})

    async def body(fs: Filesystem) -> bytes:
        ino = await ino_of(fs, "gone")
        fh, _ = await fs.open(ino, 0)
        await fs.unlink(1, "gone")
        assert await fs.lookup(1, "gone") is None
        await fs.flusher.sync_all()
        data = await fs.read(fh, 0, 1 << 30)
        fs.release(fh)
        return data

    assert harness.run(body) == b"still here" * 200_000
    assert harness.objects() == {}


def test_directory_markers_and_rmdir(harness: Harness) -> None:
    harness.store.put("full/only-in-store", b"x", {})

    async def body(fs: Filesystem) -> None:
        d = await fs.mkdir(1, "empty", 0o755, 0, 0)
        await fs.mkdir(1, "filled", 0o755, 0, 0)
        await fs.flusher.sync_all()
        assert set(harness.objects()) == {"empty/", "filled/", "full/only-in-store"}
        await write_file(fs, (await ino_of(fs, "filled")), "f", b"f")
        await fs.flusher.sync_all()
        assert set(harness.objects()) == {"empty/", "filled/f", "full/only-in-store"}
        with pytest.raises(OSError) as exc:
            await fs.rmdir(1, "full")
        assert exc.value.errno == errno.ENOTEMPTY
        await fs.rmdir(1, d.name)

    harness.run(body)
    assert set(harness.objects()) == {"filled/f", "full/only-in-store"}


def test_symlink_is_an_s3fs_style_object(harness: Harness) -> None:
    async def body(fs: Filesystem) -> str:
        await fs.symlink(1, "link", "../target", 0, 0)
        return await fs.readlink(await ino_of(fs, "link"))

    assert harness.run(body) == "../target"
    assert harness.objects() == {"link": b"../target"}
    assert stat.S_ISLNK(int((harness.store.head("link").metadata or {})["mode"]))
    assert harness.run(lambda fs: _readlink(fs, "link")) == "../target"


async def _readlink(fs: Filesystem, path: str) -> str:
    return await fs.readlink(await ino_of(fs, path))


def test_chmod_of_a_clean_file_changes_metadata_only(harness: Harness) -> None:
    harness.store.put("f", b"data", {"mode": str(stat.S_IFREG | 0o644)})
    calls: list[str] = []
    real_put = harness.store.put

    def counting_put(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args[0])
        return real_put(*args, **kwargs)

    harness.store.put = counting_put  # type: ignore[method-assign]

    async def body(fs: Filesystem) -> None:
        await fs.setattr(await ino_of(fs, "f"), mode=0o600, mtime_ns=1_000_000_000_000_000_000)

    harness.run(body)
    meta = harness.store.head("f").metadata or {}
    assert int(meta["mode"]) == stat.S_IFREG | 0o600 and meta["mtime"] == "1000000000"
    assert harness.objects() == {"f": b"data"} and calls == [], "metadata goes by copy, not re-upload"


def test_journal_replays_work_left_by_a_mount_that_could_not_upload(harness: Harness) -> None:
    async def offline(fs: Filesystem) -> None:
        d = await fs.mkdir(1, "d", 0o755, 0, 0)
        await write_file(fs, d.ino, "f", b"journaled")
        await write_file(fs, 1, "gone", b"x")
        await fs.unlink(1, "gone")

    harness.run(offline, flusher=False)
    assert harness.objects() == {}
    assert harness.run(lambda fs: read_path(fs, "d/f")) == b"journaled"
    assert harness.objects() == {"d/f": b"journaled"}


async def read_path(fs: Filesystem, path: str) -> bytes:
    return await read_file(fs, await ino_of(fs, path))


def test_clean_data_is_reused_by_the_next_mount(harness: Harness) -> None:
    blob = random.Random(3).randbytes(3 * MiB)
    harness.store.put("blob", blob, {})
    assert harness.run(lambda fs: read_path(fs, "blob")) == blob
    fetched: list[tuple[object, ...]] = []
    real = harness.store.open_range

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        fetched.append(args)
        return real(*args, **kwargs)

    harness.store.open_range = counting  # type: ignore[method-assign]
    assert harness.run(lambda fs: read_path(fs, "blob")) == blob
    assert fetched == []


def test_eviction_spares_dirty_and_open_contents(harness: Harness) -> None:
    for i in range(4):
        harness.store.put(f"o{i}", bytes([i]) * (2 * MiB), {})

    async def body(fs: Filesystem) -> None:
        for i in range(4):
            await read_path(fs, f"o{i}")
        fh, _ = await fs.open(await ino_of(fs, "o0"), 0)
        await fs.read(fh, 0, 10)
        await write_file(fs, 1, "dirty", b"d" * MiB)
        victims = fs.contents.evict_candidates()
        assert victims and all(not c.dirty and not c.pins for c in victims)
        assert fs.contents.used <= fs.settings.cache_size
        assert await fs.read(fh, 0, 2 * MiB) == bytes(2 * MiB)
        fs.release(fh)

    harness.run(body, cache_size=4 * MiB)


def test_writers_wait_while_dirty_data_is_over_the_limit(harness: Harness) -> None:
    import trio

    async def body(fs: Filesystem) -> None:
        await write_file(fs, 1, "first", b"x" * (2 * MiB))
        fh, _ = await fs.create(1, "second", 0o644, os.O_WRONLY, 0, 0)
        with trio.move_on_after(0.5) as waited:
            await fs.write(fh, 0, b"y")
        assert waited.cancelled_caught, "the write went through over the dirty limit"
        async with trio.open_nursery() as nursery:
            await nursery.start(fs.flusher.run)
            await fs.write(fh, 0, b"y")
            fs.release(fh)
            await fs.flusher.sync_all()
            nursery.cancel_scope.cancel()

    harness.run(body, flusher=False, dirty_limit=MiB)
    assert harness.objects() == {"first": b"x" * (2 * MiB), "second": b"y"}


def test_keys_that_are_not_file_names_are_skipped(harness: Harness) -> None:
    for key in ("ok", "long/" + "n" * 300, "dup", "dup/inner"):
        harness.store.put(key, b"1", {})

    async def body(fs: Filesystem) -> list[str]:
        fh = await fs.opendir(1)
        names = [name for name, _, _ in fs.readdir(fh, 0)]
        fs.releasedir(fh)
        long_dir = await ino_of(fs, "long")
        fh = await fs.opendir(long_dir)
        assert fs.readdir(fh, 0) == []
        fs.releasedir(fh)
        return names

    assert harness.run(body) == ["dup", "long", "ok"]

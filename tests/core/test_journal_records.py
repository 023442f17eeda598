"""The journal's records are what `fusestore.cache.journal` declares, and its read-only
reader reads them without running code or changing the cache.

The writers build their records by hand (the core's `record`, `Landing.record`,
`JournaledUploads`); these tests hold them to the declared schema, field by field and in
order, so that a record made from the schema pickles to the bytes the writers store."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import diskcache
import pytest

from fusestore.cache import Journal, inspector
from fusestore.cache.dbread import Unreadable
from fusestore.cache.journal import (
    ID_FILE,
    KINDS,
    LandingRecord,
    NodeRecord,
    Records,
    UploadRecord,
    problems,
    read_journal,
)
from fusestore.core.filesystem import Filesystem
from fusestore.writeback.landings import Landing
from fusestore.writeback.unfinished import JournaledUploads

from .conftest import Env, GatedPut, mkdir, resolve, write_file
from .test_parked import NAME, refuse_newlines


def read_only(cache: Path, *, in_use: bool = False) -> Records:
    fd = os.open(cache, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return read_journal(cache, fd, in_use=in_use)
    finally:
        os.close(fd)


def fingerprint(cache: Path) -> dict[str, tuple[int, str]]:
    """Every file of the cache: its mtime and a hash of its bytes."""
    found = {}
    for path in sorted(cache.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(cache))] = (
                path.stat().st_mtime_ns,
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
    return found


def assert_as_declared(
    record: type[NodeRecord] | type[UploadRecord] | type[LandingRecord], value: Any
) -> None:
    assert problems(record, value) == [], value
    again = record.of(value).to_value()
    assert pickle.dumps(again) == pickle.dumps(value), "made from the schema: the same bytes"


async def pending_work(fs: Filesystem) -> None:
    """A file, a symlink, an explicit directory, a rename and a delete."""
    await write_file(fs, "new.txt", b"data")
    await fs.symlink(1, "link", "new.txt", 0, 0)
    await mkdir(fs, "dir")
    await resolve(fs, "old")
    await fs.rename(1, "old", 1, "moved", 0)
    await resolve(fs, "gone")
    await fs.unlink(1, "gone")


@pytest.mark.trio
async def test_every_node_and_delete_record_is_as_declared(env: Env) -> None:
    env.put("old", b"an object renamed on the mount")
    env.put("gone", b"an object removed on the mount")
    gone = env.store.head("gone").etag
    refuse_newlines(env)
    async with env.mount(sync=False, writeback_delay=30) as fs:
        await write_file(fs, NAME, b"refused")
        await fs.flusher.sync_all()  # sent once, refused: parked
        await pending_work(fs)  # waits for the writeback delay
        cache = fs.cache.path
    records = read_only(cache)
    by_key = {rec["key"]: rec for rec in records.nodes.values()}
    assert set(by_key) >= {"new.txt", "link", "dir", "moved", NAME}
    for value in records.nodes.values():
        assert_as_declared(NodeRecord, value)
    typed = {rec.key: rec for rec in records.node_records().values()}
    assert typed["moved"].remote_key == "old" and typed["link"].target == "new.txt"
    assert typed[NAME].parked is not None and typed["new.txt"].parked is None
    assert records.deletes == {"gone": gone}  # the version it removed, and no other
    assert records.journal_id == (cache / ID_FILE).read_text().strip()


@pytest.mark.trio
async def test_the_mount_and_the_read_only_reader_read_the_same_records(env: Env) -> None:
    env.put("old", b"x")
    env.put("gone", b"y")
    async with env.mount(flusher=False) as fs:
        await pending_work(fs)
        cache = fs.cache.path
    before = fingerprint(cache)
    read = read_only(cache)
    assert fingerprint(cache) == before, "the reader changed no file of the cache"
    journal = Journal(cache / "journal")
    try:
        assert journal.read_all() == read
    finally:
        journal.close()


@pytest.mark.trio
async def test_a_landing_record_is_as_declared_and_read_while_the_daemon_runs(env: Env) -> None:
    gate = GatedPut(env)
    async with env.mount(writeback_delay=0) as fs:
        await write_file(fs, "f", b"data")
        await gate.wait_until_started()
        try:
            records = read_only(fs.cache.path, in_use=True)  # a snapshot next to the live journal
            [(token, value)] = records.landings.items()
            assert_as_declared(LandingRecord, value)
            assert records.landing_records()[token].key == "f"
            assert [item.key for item in inspector.pending_items(fs.cache.path)] == ["f"]
        finally:
            gate.proceed.set()


@pytest.mark.trio
@pytest.mark.parametrize("copy_of", [None, "etag"])
@pytest.mark.parametrize("unconditioned", [False, True])
@pytest.mark.parametrize("late", [False, True])
async def test_every_form_of_landing_record_is_as_declared(
    copy_of: str | None, unconditioned: bool, late: bool
) -> None:
    landing = Landing("token", "key", "jid", copy_of, unconditioned=unconditioned)
    assert_as_declared(LandingRecord, landing.record(late=late))


@pytest.mark.trio
async def test_an_upload_record_is_as_declared(env: Env, tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    try:
        uploads = JournaledUploads(journal, env.store, {})
        uploads.starting("big")  # notes the uploads pending there: none
        uploads.started("big", "upload-1")
        records = journal.read_all()
    finally:
        journal.close()
    assert_as_declared(UploadRecord, records.uploads["big"])
    assert records.upload_records()["big"].ids == ["upload-1"]


def test_the_kinds_are_the_prefixes_of_the_keys() -> None:
    assert {kind.prefix for kind in KINDS.values()} == set(KINDS)
    assert set(KINDS) == {"journal", "node", "delete", "upload", "landing", "unlinked"}


def test_a_record_of_another_form_reads_with_defaults_and_is_reported() -> None:
    value = {"kind": "file", "key": 7, "size": "big", "extra": True}
    rec = NodeRecord.of(value)
    assert (rec.key, rec.size, rec.data_dirty) == ("", 0, False)
    found = problems(NodeRecord, value)
    assert "key: 7 is not str" in found and "extra: not in the schema" in found and "perm: missing" in found


class Planted:
    """A value whose unpickling would create `path` (as a hostile cache file could run code)."""

    def __init__(self, path: Path, padding: int) -> None:
        self.path, self.padding = path, padding

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


@pytest.mark.parametrize("padding", [0, 1 << 20], ids=["in the database", "in a value file"])
def test_a_hostile_record_runs_no_code(tmp_path: Path, padding: int) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "store.json").write_text(json.dumps({"url": "memory://hostile"}))
    marker = tmp_path / "code-ran"
    db = diskcache.Cache(str(cache / "journal"))
    try:
        db.set(("node", "x"), (Planted(marker, padding), "p" * padding))
    finally:
        db.close()
    with pytest.raises(Unreadable, match="unexpected"):
        read_only(cache)
    info = inspector.describe(cache)
    assert info.pending_files is None and "unexpected" in str(info.pending_error)
    assert not marker.exists()

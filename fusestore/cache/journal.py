"""The journal: every change not yet in the store, so that no restart can lose it.

Records are small dicts in a diskcache (SQLite, WAL), keyed by (kind, name); `KINDS`
declares every kind, and `NodeRecord`, `UploadRecord` and `LandingRecord` the fields of
the three that carry data: one per file, symlink or directory with pending work (keyed by
a journal id that survives renames), one per key that still has to be deleted from the
store, the multipart uploads we started and have not finished (so that a crash cannot
leave them behind in the store), the uploads whose answer has not been recorded yet
(`landings`, so that after a crash the mount recognises its own writes), and the data
files of files removed while still open (no lost change is in them). A record is written
when the change is made and removed only once the store holds the result.

The journal knows it exists: its first record is a random id, which `journal.id` next to
it repeats. A journal that reads as empty (its database emptied or replaced, its log
dropped by SQLite) while `journal.id` names it has lost records, and the mount refuses it
(`JournalDamaged`) rather than take it for "nothing pending".

Commits are NORMAL-synchronous (WAL): they survive the daemon being killed at once, and
`sync` (in a worker thread: it fsyncs) makes them survive a power cut too. Measured here:
0.06 ms per record instead of 0.46 ms with an fsync per commit on the trio thread.

Two ways to read it, one parse (`Records.add`): the mount's `Journal.read_all`, and
`read_journal`, which reads a journal without writing to it or taking the daemon's lock
(see `dbread`), for the cache inspector: records unpickled as plain data only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import sqlite3
import threading
import types
import typing
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import diskcache

from .dbread import FILE_FLAGS, Unreadable, read_rows
from .diskfull import disk_errors
from .keydisk import KeyCachingDisk
from .recovery import JournalDamaged, check_wal
from .writeout import sync_log

#: the journal's own id (see the module docstring), and the file next to it that repeats it
ID_KEY = ("journal", "id")
ID_FILE = "journal.id"


# -- the records ---------------------------------------------------------------------------
#
# Each record is one entry: key (kind, name), value plain data. The fields of the typed
# records are the keys of the dicts written, in the order written, so that a record made
# with `to_value` pickles to the same bytes as the ones the writers (the core's `record`,
# `landings.Landing.record`, `unfinished.JournaledUploads`) build by hand.


@dataclass(frozen=True)
class NodeRecord:
    """("node", jid): a file, symlink, special file or directory with pending work (written
    by the core)."""

    #: "file", "symlink", "dir", "fifo", "socket", "chardev" or "blockdev"
    kind: str = "file"
    #: its key now (a directory's without the slash)
    key: str = ""
    perm: int = 0
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    #: the access time where it is not the mtime
    atime_ns: int | None = None
    #: extended attributes, in their metadata form (see `stores.posix.encode_xattrs`)
    xattrs: str | None = None
    size: int = 0
    #: the object the node is based on, when the store holds one (another key: a move)
    remote_key: str | None = None
    etag: str | None = None
    remote_size: int = 0
    #: its data is to be uploaded / its attributes are to be written
    data_dirty: bool = False
    meta_dirty: bool = False
    #: the data file (its name under `data/`) holding the changes, while `data_dirty`
    content: str | None = None
    #: that data file's bytes of the object it started from, and its blocks present (hex)
    base_size: int = 0
    present: str = "0"
    #: a symlink's target
    target: str = ""
    #: a device's number
    rdev: int = 0
    #: a directory keeps its `dir/` marker (see `Node.explicit`); the marker the store holds
    explicit: bool = False
    marker_key: str | None = None
    #: the key whose object its upload replaces (see `Node.overwrites`)
    overwrites: str | None = None
    #: its attributes were never read: a move copies the object with its own metadata
    attrs_guessed: bool = False
    #: why the store refused its key for good (see `parked`); None: it goes up as it is
    parked: str | None = None

    @classmethod
    def of(cls, value: dict[str, Any]) -> NodeRecord:
        return _typed(cls, value)

    def to_value(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class UploadRecord:
    """("upload", key): multipart uploads to `key` started and not known to be finished or
    aborted (written by `unfinished.JournaledUploads`)."""

    #: the upload ids recorded
    ids: list[str] = field(default_factory=list)
    #: the uploads pending at the key before a start whose answer never came (None: none)
    before: list[str] | None = None

    @classmethod
    def of(cls, value: dict[str, Any]) -> UploadRecord:
        return _typed(cls, value)

    def to_value(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class LandingRecord:
    """("landing", token): an upload carrying `token` whose outcome is not recorded yet
    (written by `landings.Landing.record`)."""

    key: str = ""
    #: the journal id of the file that sent it
    jid: str | None = None
    #: for a copy: the etag of its source
    copy_of: str | None = None
    #: sent with no condition on the object it replaces (written only when true)
    unconditioned: bool = field(default=False, metadata={"only_if_true": True})
    #: found not landed when asked, while the store may still take it (only when true)
    late: bool = field(default=False, metadata={"only_if_true": True})

    @classmethod
    def of(cls, value: dict[str, Any]) -> LandingRecord:
        return _typed(cls, value)

    def to_value(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class RecordKind:
    """One kind of record: its key is (`prefix`, a name), its value a `record` as a dict,
    True for a `flag` (the key says it all), or the journal's id (a string)."""

    prefix: str
    #: what the key's name is
    name: str
    #: the typed record of its value (None: not a dict)
    record: type[NodeRecord] | type[UploadRecord] | type[LandingRecord] | None
    #: the attribute of `Records` that gathers it
    gathered_in: str
    #: the value is True: a reader need not read it
    flag: bool = False


#: Every kind of record a journal holds, by key prefix.
KINDS: dict[str, RecordKind] = {
    kind.prefix: kind
    for kind in (
        RecordKind("journal", "'id' (see ID_KEY); its value is the journal's id", None, "journal_id"),
        RecordKind("node", "journal id (survives renames)", NodeRecord, "nodes"),
        RecordKind(
            "delete",
            "key still to be deleted from the store; the value: the etag of the version to "
            "delete, or True (whatever is there)",
            None,
            "deletes",
        ),
        RecordKind("upload", "key of unfinished multipart uploads", UploadRecord, "uploads"),
        RecordKind("landing", "upload token", LandingRecord, "landings"),
        RecordKind("unlinked", "content id of a file removed while open", None, "unlinked", flag=True),
    )
}


def record_kind(key: Any) -> RecordKind | None:
    """The kind of the record at `key`; None for a key no journal record has."""
    if type(key) is not tuple or len(key) != 2 or not isinstance(key[1], str):
        return None
    return KINDS.get(key[0]) if isinstance(key[0], str) else None


def problems(record: type[NodeRecord] | type[UploadRecord] | type[LandingRecord], value: Any) -> list[str]:
    """How `value` departs from the fields of `record` (missing, unknown, of another type,
    or in another order than declared): [] for a value exactly as the schema says."""
    if not isinstance(value, dict):
        return [f"not a dict: {type(value).__name__}"]
    found = []
    checks = _checks(record)
    for f in dataclasses.fields(record):
        if f.name not in value:
            if not f.metadata.get("only_if_true"):
                found.append(f"{f.name}: missing")
        elif not checks[f.name](value[f.name]):
            hint = _hints(record)[f.name]
            found.append(
                f"{f.name}: {value[f.name]!r} is not {hint.__name__ if isinstance(hint, type) else hint}"
            )
    found += [f"{name}: not in the schema" for name in value if name not in checks]
    if not found and [name for name in checks if name in value] != list(value):
        found.append(f"fields in another order than declared: {list(value)}")
    return found


_Typed = TypeVar("_Typed", NodeRecord, UploadRecord, LandingRecord)


def _typed(record: type[_Typed], value: dict[str, Any]) -> _Typed:
    """`value` as a `record`: a field missing, or of another type (a journal written by an
    older version, or damaged), takes its default. Never runs code (plain data in)."""
    known: dict[str, Any] = {}
    for name, accepts in _checks(record).items():
        if name in value and accepts(value[name]):
            known[name] = list(value[name]) if isinstance(value[name], list) else value[name]
    return record(**known)


def _plain(record: NodeRecord | UploadRecord | LandingRecord) -> dict[str, Any]:
    """The dict a writer stores for `record` (fields in declared order)."""
    return {
        f.name: getattr(record, f.name)
        for f in dataclasses.fields(record)
        if not (f.metadata.get("only_if_true") and not getattr(record, f.name))
    }


def _hints(record: type) -> dict[str, Any]:
    return typing.get_type_hints(record)


_CHECKS: dict[type, dict[str, Callable[[Any], bool]]] = {}


def _checks(record: type) -> dict[str, Callable[[Any], bool]]:
    """Field name -> whether a value has that field's declared type (made once a record)."""
    checks = _CHECKS.get(record)
    if checks is None:
        hints = _hints(record)
        checks = _CHECKS[record] = {f.name: _accepts(hints[f.name]) for f in dataclasses.fields(record)}
    return checks


def _accepts(hint: Any) -> Callable[[Any], bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [_accepts(arg) for arg in typing.get_args(hint)]
        return lambda value: any(accepts(value) for accepts in options)
    if typing.get_origin(hint) is list:
        item = _accepts(typing.get_args(hint)[0])
        return lambda value: isinstance(value, list) and all(item(v) for v in value)
    if hint is type(None):
        return lambda value: value is None
    if hint is int:
        return lambda value: isinstance(value, int) and not isinstance(value, bool)
    if hint in (bool, str):
        return lambda value: isinstance(value, hint)
    raise TypeError(f"no check for {hint!r}")  # a schema field of a type not handled here


@dataclass
class Records:
    """Everything a journal holds, read in one pass (`Journal.read_all`, `read_journal`).

    Values are kept as written (plain dicts, so a mount replays them without a parse);
    `node_records`, `upload_records` and `landing_records` give them typed."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: key -> the etag of the version to delete (None: whatever is there)
    deletes: dict[str, str | None] = field(default_factory=dict)
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    landings: dict[str, dict[str, Any]] = field(default_factory=dict)
    unlinked: set[str] = field(default_factory=set)
    #: the journal's own id (see the module docstring); None: it has none
    journal_id: str | None = None

    def add(self, kind: RecordKind, name: str, value: Any) -> None:
        """The record (`kind`, `name`) read with `value`. Raises ValueError for a value
        that is not of its kind's form (a damaged journal)."""
        if kind.prefix == "delete":
            if value is not None:  # None: removed while the journal was read
                self.deletes[name] = value if isinstance(value, str) else None
        elif kind.flag:
            gathered = getattr(self, kind.gathered_in)
            (gathered.append if isinstance(gathered, list) else gathered.add)(name)
        elif kind.record is None:
            if (kind.prefix, name) == ID_KEY:
                self.journal_id = value if isinstance(value, str) else None
        elif value is not None:  # None: removed while the journal was read
            if not isinstance(value, dict):
                raise ValueError(f"a {kind.prefix} record is not a dict")
            getattr(self, kind.gathered_in)[name] = value

    def content_ids(self) -> set[str]:
        """The data files the node records name (changes not yet in the store)."""
        found = (rec.get("content") for rec in self.nodes.values())
        return {content for content in found if isinstance(content, str) and content}

    def node_records(self) -> dict[str, NodeRecord]:
        return {jid: NodeRecord.of(value) for jid, value in self.nodes.items()}

    def upload_records(self) -> dict[str, UploadRecord]:
        return {key: UploadRecord.of(value) for key, value in self.uploads.items()}

    def landing_records(self) -> dict[str, LandingRecord]:
        return {token: LandingRecord.of(value) for token, value in self.landings.items()}


def read_journal(cache: Path, dir_fd: int, *, in_use: bool) -> Records:
    """The records of the journal of the cache at `cache` (open as `dir_fd`), read without
    writing to any file of the cache, creating one, or taking the daemon's lock (see
    `dbread`: a snapshot of a live journal, the immutable file, or a private copy of a
    killed daemon's). Values are unpickled as plain data only.

    `in_use`: a daemon holds the cache. Raises `Unreadable` when the journal cannot be
    read, or lacks the id `journal.id` names (its records are gone). Blocks on local disk
    only, plus SQLite's busy wait (at most `dbread.BUSY_TIMEOUT`).
    """
    expected = _id_named(dir_fd)
    rows = read_rows(cache, dir_fd, "journal", lambda key: record_kind(key) is not None, in_use=in_use)
    if rows is None and expected is not None:
        raise Unreadable(f"journal is missing, and {ID_FILE} expects one")
    found = Records()
    try:
        for key, value in rows or ():
            found.add(KINDS[key[0]], key[1], value)
    except ValueError as exc:
        raise Unreadable(str(exc)) from None
    if expected is not None and found.journal_id != expected:
        raise Unreadable(f"its records are gone: {ID_FILE} names journal {expected}")
    return found


def _id_named(dir_fd: int) -> str | None:
    """The id `journal.id` names (None: no such file, as in caches made before it)."""
    try:
        fd = os.open(ID_FILE, FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Unreadable(f"{ID_FILE}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as marker:
        return marker.read(256).decode(errors="replace").strip()


class Journal:
    """Durable pending work. Every method but `sync` is a small inline SQLite transaction
    (safe from any thread); `sync` blocks on fsync.

    Opening (blocking: it fsyncs when it makes a new journal) raises JournalDamaged when
    the journal cannot be read or has lost records, and so does a reading method that
    meets a record it cannot read; nothing of the cache is changed then."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: bumped by every change; `sync` compares it to skip work when nothing changed
        self.changes = 0
        self._synced = 0
        #: bumped by every hint (see `save_node`)
        self._hints = 0
        self._hints_synced = 0
        #: the "unlinked" records (so that dropping one not there costs no transaction)
        self._unlinked: set[str] = set()
        self._sync_lock = threading.Lock()
        self._cache = cache = path.parent
        damage = check_wal(path / "cache.db-wal")
        if damage is not None:
            raise JournalDamaged(cache, damage)
        try:
            # Nothing in it expires and nothing is evicted: no culling query on every write
            # (cull_limit=0), 156 → 134 µs per record here.
            self._db = diskcache.Cache(
                str(path),
                disk=KeyCachingDisk,
                sqlite_synchronous=1,
                size_limit=2**62,
                eviction_policy="none",
                cull_limit=0,
            )
        except sqlite3.OperationalError:
            raise  # a full disk, a lock: not the journal's own damage
        except sqlite3.DatabaseError as exc:
            raise JournalDamaged(cache, str(exc)) from None
        try:
            self._check_records(cache)
        except BaseException:
            self._db.close()
            raise

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """A record that cannot be read (a garbled page or value) is the journal's damage."""
        try:
            yield
        except sqlite3.OperationalError:
            raise  # a lock, a full disk: not the journal's own damage
        except (sqlite3.DatabaseError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
            raise JournalDamaged(self._cache, f"{type(exc).__name__}: {exc}") from None

    def _check_records(self, cache: Path) -> None:
        """The journal's id is the one `journal.id` names (the records are read, and
        checked, by `read_all`, which a mount calls first)."""
        with self._reading():
            own = self._db.get(ID_KEY)
        id_file = cache / ID_FILE
        try:
            expected: str | None = id_file.read_text().strip()
        except FileNotFoundError:
            expected = None
        if own is None and expected is not None:
            raise JournalDamaged(cache, f"its records are gone: {ID_FILE} names journal {expected}")
        if own is not None and expected is not None and own != expected:
            raise JournalDamaged(cache, f"it is journal {own}, not journal {expected} named by {ID_FILE}")
        if own is None:  # a new journal (or one made before journals had an id)
            own = uuid.uuid4().hex
            with disk_errors("journal"):
                self._db.set(ID_KEY, own)
            self.changes += 1
            self.sync()  # the id is durable before the file that expects it
        if expected is None:
            temporary = cache / (ID_FILE + ".tmp")
            temporary.write_text(own + "\n")
            fd = os.open(temporary, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temporary, id_file)
            fd = os.open(cache, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """A context in which every change is one SQLite transaction (for many at once):
        all of them are written, or none (a full disk, at any of them or at the commit,
        raises OSError(ENOSPC))."""
        with disk_errors("journal"), self._db.transact():
            yield

    def save_node(self, jid: str, record: dict[str, Any], *, hint: bool = False) -> None:
        """Write a node's record. A `hint` (a record that differs from the last only in
        what a restart can do without) does not make `needs_sync()` true, only
        `needs_sync(hints=True)`."""
        with disk_errors("journal"):
            self._db.set(("node", jid), record)
        if hint:
            self._hints += 1
        else:
            self.changes += 1

    def drop_node(self, jid: str) -> None:
        with disk_errors("journal"):
            self._db.delete(("node", jid))
        self.changes += 1

    def add_delete(self, key: str, etag: str | None = None) -> None:
        """`key` is to be deleted: the version `etag` of it, or whatever is there (None)."""
        with disk_errors("journal"):
            self._db.set(("delete", key), True if etag is None else etag)
        self.changes += 1

    def drop_delete(self, key: str) -> None:
        with disk_errors("journal"):
            self._db.delete(("delete", key))
        self.changes += 1

    def save_upload(self, key: str, record: dict[str, Any] | None) -> None:
        """The multipart uploads to `key` we started and have not finished (see
        `unfinished.JournaledUploads`), or None once there are none."""
        with disk_errors("journal"):
            if record is None:
                self._db.delete(("upload", key))
            else:
                self._db.set(("upload", key), record)
        self.changes += 1

    def add_unlinked(self, content_id: str) -> None:
        """The data file `content_id` belongs to a file removed while still open (dirty
        or not yet: it may be written to through its descriptors until the last close): a
        restart may delete it (no record names it, yet it holds no lost change)."""
        with disk_errors("journal"):
            self._db.set(("unlinked", content_id), True)
        self._unlinked.add(content_id)
        self.changes += 1

    def add_landing(self, token: str, record: dict[str, Any]) -> None:
        """An upload carrying `token` is about to go out (see `landings`)."""
        with disk_errors("journal"):
            self._db.set(("landing", token), record)
        self.changes += 1

    def drop_landing(self, token: str) -> None:
        with disk_errors("journal"):
            self._db.delete(("landing", token))
        self.changes += 1

    def drop_unlinked(self, content_id: str) -> None:
        if content_id in self._unlinked:
            with disk_errors("journal"):
                self._db.delete(("unlinked", content_id))
            self._unlinked.discard(content_id)
            self.changes += 1

    def needs_sync(self, *, hints: bool = False) -> bool:
        return self.changes > self._synced or (hints and self._hints > self._hints_synced)

    def sync(self, *, hints: bool = True) -> None:
        """Make every change so far survive a power cut (blocks: fsync); without `hints`,
        skip the fsync when only hints were written since the last one."""
        with self._sync_lock:
            target, hint_target = self.changes, self._hints
            if not self.needs_sync(hints=hints):
                return
            sync_log(self.path)
            self._synced, self._hints_synced = target, hint_target

    def read_all(self) -> Records:
        """Every record, in one pass over the journal (each pass costs ~60 µs a record)."""
        found = Records()
        with self._reading():
            for key in self._db.iterkeys():
                kind = record_kind(key)
                if kind is not None:
                    # A kind without a value is known by its key (no look-up per delete).
                    found.add(kind, key[1], True if kind.flag else self._db.get(key))
        self._unlinked |= found.unlinked
        return found

    def __len__(self) -> int:
        return len(self._db) - (ID_KEY in self._db)

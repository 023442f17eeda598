"""The journal of a cache, read-only: the work it holds for the next mount.

The journal is only ever read, never written, and no file of the cache changes: it is
read through a read-only SQLite connection next to a running daemon's (concurrent WAL
reads are safe; what is shown is a snapshot, maybe stale by the time it is printed), as
an immutable file when it has no write-ahead log, or, when a daemon that was killed left
a log behind, from a private copy of the database and its log. Records are unpickled as
plain data only (dicts, lists, strings, numbers): no journal can make this process run
code. Files of the journal directory are opened without following a symlink. Every
function blocks on local disk only, plus at most `JOURNAL_TIMEOUT` of SQLite's busy wait
while a running daemon holds the journal's write lock.
"""

from __future__ import annotations

import io
import os
import pickle
import sqlite3
import stat
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..journal import ID_FILE, ID_KEY
from ..recovery import check_wal
from .cachedir import DIR_FLAGS, FILE_FLAGS, in_use_by_daemon, lstat, opened
from .errors import CacheError

JOURNAL_DB = "cache.db"
#: How long a read of the journal waits for a running daemon's SQLite lock, in seconds.
JOURNAL_TIMEOUT = 5.0
#: diskcache's value modes (diskcache.core.MODE_RAW, MODE_PICKLE)
_MODE_RAW = 1
_MODE_PICKLE = 4


@dataclass(frozen=True)
class PendingItem:
    """One piece of work the journal holds for the next mount.

    `kind` is "file", "symlink" or "dir" for a journal record of a node, "delete" for a
    key still to be deleted from the store, "upload" for a multipart upload that was
    started and possibly never finished or aborted (the next mount aborts it).
    """

    kind: str
    key: str
    #: bytes the next mount uploads from the cache (the file's size when its data is pending)
    dirty_bytes: int = 0
    #: the file's data is to be uploaded (changed, or never uploaded)
    data: bool = False
    #: its attributes (mode, owner, mtime; a directory's marker) are to be written
    metadata: bool = False
    #: the object it is based on, at another key: a rename not yet done in the store
    moved_from: str | None = None
    #: the data file (name under `data/`) that holds its changes
    content: str | None = None
    #: for "upload": the upload ids recorded (empty when the id never reached the daemon)
    upload_ids: tuple[str, ...] = ()
    #: why the store refused its key for good (see `parked`): it goes up once renamed or
    #: changed, or if a later mount's store takes it; None for work that goes up as it is
    not_uploadable: str | None = None

    def summary(self) -> str:
        """What is pending, in a few words: "data, metadata", "move from a/b", "delete"."""
        if self.not_uploadable is not None:
            return f"NOT UPLOADABLE: {self.not_uploadable}; rename it on the mount"
        if self.kind == "delete":
            return "delete"
        if self.kind == "upload":
            return f"unfinished multipart upload ({len(self.upload_ids) or 'unknown'} id(s))"
        if self.kind == "dir":
            return "directory marker" + (" with attributes" if self.metadata else "")
        parts = [name for name, flag in (("data", self.data), ("metadata", self.metadata)) if flag]
        if self.moved_from is not None:
            parts.append(f"move from {self.moved_from}")
        return ", ".join(parts) or "upload"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "dirty_bytes": self.dirty_bytes,
            "data": self.data,
            "metadata": self.metadata,
            "moved_from": self.moved_from,
            "content": self.content,
            "upload_ids": list(self.upload_ids),
            "not_uploadable": self.not_uploadable,
            "summary": self.summary(),
        }


def pending_items(path: Path | str) -> list[PendingItem]:
    """Every piece of work the journal of the cache at `path` holds: files, symlinks and
    directories (sorted by key), then keys to delete, then unfinished multipart uploads.

    Read-only, also while a daemon uses the cache (a snapshot). Raises NotACache, or
    CacheError when the journal cannot be read. Blocks on local disk only.
    """
    path = Path(path).absolute()
    with opened(path) as dir_fd:
        in_use = in_use_by_daemon(dir_fd)
        try:
            return read_journal(path, dir_fd, in_use=in_use).items()
        except JournalUnreadable as exc:
            raise CacheError(f"cannot read the journal of {path}: {exc}") from None


class JournalUnreadable(Exception):
    """The journal (or the index) cannot be read; the message says why, in a few words."""


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain data only (dicts, lists, tuples, strings, numbers, None)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"unexpected {module}.{name}")


def _unpickle(data: bytes) -> Any:
    return _PlainUnpickler(io.BytesIO(data)).load()


@dataclass
class JournalContents:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: content id -> size of its cache file: a file's size (its record's may be up to a
    #: persist behind, as the daemon takes the size from the cache file too)
    content_sizes: dict[str, int] = field(default_factory=dict)
    #: the journal's own id (see `fusestore.cache.journal`)
    journal_id: str | None = None
    #: read from an index: the data files that are clean copies of objects, with the size
    #: each entry states (None: it states none)
    clean_sizes: dict[str, int | None] = field(default_factory=dict)

    def has_work(self) -> bool:
        return bool(self.nodes or self.deletes or self.uploads)

    def content_ids(self) -> set[str]:
        return {rec["content"] for rec in self.nodes.values() if isinstance(rec.get("content"), str)}

    def items(self) -> list[PendingItem]:
        nodes = sorted(
            (_node_item(rec, self.content_sizes) for rec in self.nodes.values()), key=lambda item: item.key
        )
        deletes = [PendingItem("delete", key) for key in sorted(self.deletes)]
        uploads = [
            PendingItem(
                "upload",
                key,
                upload_ids=tuple(str(i) for i in rec.get("ids") or ()),
            )
            for key, rec in sorted(self.uploads.items())
        ]
        return nodes + deletes + uploads

    def losses(self) -> list[str]:
        """What removing this journal throws away, one line each."""
        items = self.items()
        lost = []
        files = [i for i in items if i.kind in ("file", "symlink")]
        if files:
            dirty = sum(i.dirty_bytes for i in files)
            lost.append(f"{len(files)} file(s) with changes not yet in the store ({dirty} bytes of data)")
        dirs = sum(1 for i in items if i.kind == "dir")
        if dirs:
            lost.append(f"{dirs} directory marker(s) not yet written or deleted in the store")
        if self.deletes:
            lost.append(f"{len(self.deletes)} key(s) not yet deleted from the store")
        if self.uploads:
            lost.append(
                f"{len(self.uploads)} multipart upload(s) possibly left unfinished in the store "
                "(they cost storage until aborted, e.g. by a lifecycle rule)"
            )
        return lost


def _node_item(rec: dict[str, Any], content_sizes: dict[str, int]) -> PendingItem:
    kind = str(rec.get("kind") or "file")
    key = str(rec.get("key") or "")
    metadata = bool(rec.get("meta_dirty"))
    parked = rec.get("parked")
    not_uploadable = parked if isinstance(parked, str) else None
    if kind == "dir":
        return PendingItem("dir", key, metadata=metadata, not_uploadable=not_uploadable)
    remote_key = rec.get("remote_key")
    data = bool(rec.get("data_dirty")) or remote_key is None
    content = rec.get("content")
    size = content_sizes.get(content, rec.get("size")) if isinstance(content, str) else rec.get("size")
    return PendingItem(
        kind,
        key,
        dirty_bytes=size if data and isinstance(size, int) else 0,
        data=data,
        metadata=metadata,
        moved_from=str(remote_key) if remote_key is not None and remote_key != key else None,
        content=content if isinstance(content, str) else None,
        not_uploadable=not_uploadable,
    )


def read_journal(path: Path, dir_fd: int, *, in_use: bool) -> JournalContents:
    """The records of the journal and the sizes of the cache files they name, read
    without changing (or creating) any file of the cache."""
    contents = read_records(path, dir_fd, in_use=in_use)
    ids = contents.content_ids()
    st = lstat("data", dir_fd)
    if not ids or st is None or not stat.S_ISDIR(st.st_mode):
        return contents
    try:
        data_fd = os.open("data", DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        return contents  # unreadable: the records' own sizes stand
    try:
        for content_id in ids:
            if "/" in content_id or content_id in ("", ".", ".."):
                continue  # not a name the daemon makes: the record's own size stands
            st = lstat(content_id, data_fd)
            if st is not None and stat.S_ISREG(st.st_mode):
                contents.content_sizes[content_id] = st.st_size
    finally:
        os.close(data_fd)
    return contents


def read_records(path: Path, dir_fd: int, *, in_use: bool, name: str = "journal") -> JournalContents:
    """The records of the journal, read without changing (or creating) any file of the cache.

    In use, with the daemon's write-ahead log and its index present: a read-only
    connection next to the daemon's (concurrent WAL readers are safe). Without a log, or
    an empty one: the database file as immutable (records not yet checkpointed are all in
    a log). A non-empty log and no daemon (one was killed): a private copy of the database
    and its log, as SQLite would need to write next to them. No journal: no work, unless
    `journal.id` expects one. A log whose header is damaged (SQLite would silently take it
    for empty) or a journal that lacks the id `journal.id` names is unreadable. `name`
    "index": the same, of the index.
    """
    expected = _journal_id(dir_fd) if name == "journal" else None
    st = lstat(name, dir_fd)
    if st is None:
        if expected is not None:
            raise JournalUnreadable(f"{name} is missing, and {ID_FILE} expects one")
        return JournalContents()
    if not stat.S_ISDIR(st.st_mode):
        raise JournalUnreadable(f"{name} is not a directory")
    try:
        journal_fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise JournalUnreadable(str(exc.strerror)) from None
    try:
        contents = _query_db(path / name, journal_fd, in_use=in_use)
    except OSError as exc:
        raise JournalUnreadable(str(exc.strerror or exc)) from None
    finally:
        os.close(journal_fd)
    if expected is not None and contents.journal_id != expected:
        raise JournalUnreadable(f"its records are gone: {ID_FILE} names journal {expected}")
    return contents


def _journal_id(dir_fd: int) -> str | None:
    """The id `journal.id` names (None: no such file, as in caches made before it)."""
    try:
        fd = os.open(ID_FILE, FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JournalUnreadable(f"{ID_FILE}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as marker:
        return marker.read(256).decode(errors="replace").strip()


def _query_db(directory: Path, journal_fd: int, *, in_use: bool) -> JournalContents:
    db = lstat(JOURNAL_DB, journal_fd)
    if db is None:
        return JournalContents()
    if not stat.S_ISREG(db.st_mode):
        raise JournalUnreadable(f"{directory.name}/{JOURNAL_DB} is not a regular file")
    db_path = directory / JOURNAL_DB
    wal = lstat(f"{JOURNAL_DB}-wal", journal_fd)
    if in_use and wal is not None and lstat(f"{JOURNAL_DB}-shm", journal_fd) is not None:
        return _query(f"{_uri(db_path)}?mode=ro", journal_fd)
    if wal is None or wal.st_size == 0:
        # Every record is in the database file, which only a checkpoint writes to.
        return _query(f"{_uri(db_path)}?mode=ro&immutable=1", journal_fd)
    with tempfile.TemporaryDirectory(prefix="fusestore-journal-") as scratch:
        for name in (JOURNAL_DB, f"{JOURNAL_DB}-wal"):
            _copy_out(journal_fd, name, Path(scratch) / name)
        damage = check_wal(Path(scratch) / f"{JOURNAL_DB}-wal")
        if damage is not None:
            raise JournalUnreadable(damage)
        return _query(f"{_uri(Path(scratch) / JOURNAL_DB)}?mode=ro", journal_fd)


def _uri(db_path: Path) -> str:
    return "file:" + urllib.parse.quote(str(db_path))


def _copy_out(dir_fd: int, name: str, target: Path) -> None:
    fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as source, open(target, "wb") as copy:
        while chunk := source.read(1 << 20):
            copy.write(chunk)


def _query(uri: str, journal_fd: int) -> JournalContents:
    contents = JournalContents()
    try:
        con = sqlite3.connect(uri, uri=True, timeout=JOURNAL_TIMEOUT)
        try:
            rows = con.execute("SELECT key, mode, filename, value FROM Cache WHERE raw = 0").fetchall()
        finally:
            con.close()
        for db_key, mode, filename, db_value in rows:
            key = _unpickle(bytes(db_key))
            if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[1], str)):
                continue
            kind, name = key
            if kind == "delete":
                contents.deletes.append(name)
            elif kind == "content":  # an index's
                value = _value(mode, filename, db_value, journal_fd)
                size = value.get("size") if isinstance(value, dict) else None
                contents.clean_sizes[name] = size if isinstance(size, int) else None
            elif (kind, name) == ID_KEY:
                value = _value(mode, filename, db_value, journal_fd)
                contents.journal_id = value if isinstance(value, str) else None
            elif kind in ("node", "upload"):
                value = _value(mode, filename, db_value, journal_fd)
                if not isinstance(value, dict):
                    raise JournalUnreadable(f"a {kind} record is not a dict")
                (contents.nodes if kind == "node" else contents.uploads)[name] = value
    except (sqlite3.Error, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise JournalUnreadable(f"{type(exc).__name__}: {exc}") from None
    return contents


def _value(mode: int, filename: str | None, db_value: Any, journal_fd: int) -> Any:
    if mode == _MODE_RAW:
        return db_value
    if mode != _MODE_PICKLE:
        raise JournalUnreadable(f"unexpected value mode {mode}")
    if db_value is not None:
        return _unpickle(bytes(db_value))
    # A large value lives in a file of the journal directory (diskcache: "ab/cd/<hex>.val").
    parts = str(filename or "").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise JournalUnreadable(f"unexpected value file name {filename!r}")
    fds: list[int] = []
    try:
        current = journal_fd
        for part in parts[:-1]:
            current = os.open(part, DIR_FLAGS, dir_fd=current)
            fds.append(current)
        fd = os.open(parts[-1], FILE_FLAGS, dir_fd=current)
        with os.fdopen(fd, "rb") as value_file:
            return _unpickle(value_file.read())
    finally:
        for fd in fds:
            os.close(fd)

"""The caches on this machine: what each one holds, what it still has to upload, cleaning it.

The logic behind `fusestore cache list|show|clean`: `find_caches` and `describe` report,
`pending_items` details the journal, `clean` frees space. Nothing here talks to a store or
a daemon: every function blocks on local disk only (plus at most a few seconds of
SQLite's busy wait while a running daemon holds its journal's write lock).

What a cache directory holds (see `fusestore.cache.layout`): `store.json` (the store's
URL; a directory without it is not a cache and is refused), `lock` (flock'ed by the
daemon using the cache), `data/` (one file per content id), `index/` (diskcache: clean
contents, remembered metadata), `journal/` (diskcache: work not yet in the store),
`journal.id` (which journal that is) and `lost+found/` (data set aside by a mount: files
that may hold changes but that no journal record could account for; `recover` copies
them out). A data file named by a journal record holds changes not yet in the store;
every other data file is clean (a copy of an object) and may be removed at any time, as
long as the journal can be read.

Safety rules every function keeps:

- A cache is *in use* while another process holds the flock on its `lock`. It is tested
  with a non-blocking shared flock on a separate descriptor, released at once; the lock
  file is never created. (For that instant a daemon starting on the same cache would be
  told the cache is in use; it is never broken.)
- The journal is only ever read, never written, and no file of the cache changes: it is
  read through a read-only SQLite connection next to a running daemon's (concurrent WAL
  reads are safe; what is shown is a snapshot, maybe stale by the time it is printed),
  as an immutable file when it has no write-ahead log, or, when a daemon that was killed
  left a log behind, from a private copy of the database and its log. So the pending
  fields are known for caches in use too; they are None (unknown) only when the journal
  cannot be read at all. Records are unpickled as plain data only (dicts, lists,
  strings, numbers): no journal can make this process run code.
- Symlinks inside the cache directory are never followed (the cache path itself may be
  one); only the cache's own entries (`data`, `index`, `journal`, `lock`, `store.json`)
  are ever removed, so a cache directory shared with other files loses none of them.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import pickle
import sqlite3
import stat
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache.journal import ID_FILE, ID_KEY
from .cache.layout import default_cache_root
from .cache.recovery import LOST_FOUND, LostEntry, check_wal
from .cache.recovery import lost_entries as _lost_entries
from .cache.recovery import recover as _recover

#: The entries of a cache directory that belong to fusestore (and only those are removed).
CACHE_ENTRIES = ("data", "index", "journal", ID_FILE, LOST_FOUND, "lock", "store.json")
#: The order `clean` removes them in when it removes them all.
REMOVAL_ORDER = (ID_FILE, "journal", "index", "data", LOST_FOUND, "lock", "store.json")
JOURNAL_DB = "cache.db"
#: How long a read of the journal waits for a running daemon's SQLite lock, in seconds.
JOURNAL_TIMEOUT = 5.0

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
#: diskcache's value modes (diskcache.core.MODE_RAW, MODE_PICKLE)
_MODE_RAW = 1
_MODE_PICKLE = 4


class CacheError(Exception):
    """A cache cannot be described or cleaned. The message is one line and names the fix."""


class NotACache(CacheError):
    """The path is not a fusestore cache directory (missing, not a directory, no store.json)."""


class CacheInUse(CacheError):
    """A running daemon holds the cache's lock."""


# -- results ---------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class CacheInfo:
    """What one cache directory holds. Sizes are bytes allocated on disk (st_blocks * 512).

    The pending fields (`pending_files` to `unfinished_uploads`, and `clean_bytes`, which
    depends on them) are None when the journal could not be read; `pending_error` then
    says why. For a cache in use they are a snapshot read while the daemon works.
    """

    path: Path
    #: the store the cache belongs to; None when store.json is unreadable
    store_url: str | None
    #: a running daemon holds the cache's lock
    in_use: bool
    #: last modification of the lock or the journal (unix time); None if neither exists
    last_used: float | None
    #: data/ + index/ + journal/ + lock + store.json: what `clean(force=True)` frees
    total_bytes: int
    data_bytes: int
    data_files: int
    index_bytes: int
    journal_bytes: int
    #: data files no pending work needs (clean copies of objects, leftovers)
    clean_bytes: int | None
    #: files and symlinks whose upload (data, attributes or rename) is pending
    pending_files: int | None
    #: directories whose marker object is to be written or deleted
    pending_dirs: int | None
    #: bytes of file data the next mount uploads (sizes of files whose data is pending)
    dirty_bytes: int | None
    #: keys still to be deleted from the store
    pending_deletes: int | None
    #: multipart uploads recorded as started and not known to be finished or aborted
    unfinished_uploads: int | None
    pending_error: str | None = None
    #: files set aside in lost+found (not in the store; `recover` copies them out)
    lost_files: int = 0
    lost_bytes: int = 0
    #: files and directories whose key the store refused for good (counted above too)
    not_uploadable: int | None = None

    @property
    def pending(self) -> bool | None:
        """Whether the journal holds any work at all (None: unknown)."""
        counts = (
            self.pending_files,
            self.pending_dirs,
            self.pending_deletes,
            self.unfinished_uploads,
        )
        if any(count is None for count in counts):
            return None
        return any(counts)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (path as a string, `pending` included)."""
        return {
            "path": str(self.path),
            "store_url": self.store_url,
            "in_use": self.in_use,
            "last_used": self.last_used,
            "total_bytes": self.total_bytes,
            "data_bytes": self.data_bytes,
            "data_files": self.data_files,
            "index_bytes": self.index_bytes,
            "journal_bytes": self.journal_bytes,
            "clean_bytes": self.clean_bytes,
            "pending": self.pending,
            "pending_files": self.pending_files,
            "pending_dirs": self.pending_dirs,
            "dirty_bytes": self.dirty_bytes,
            "pending_deletes": self.pending_deletes,
            "unfinished_uploads": self.unfinished_uploads,
            "not_uploadable": self.not_uploadable,
            "pending_error": self.pending_error,
            "lost_files": self.lost_files,
            "lost_bytes": self.lost_bytes,
        }


@dataclass(frozen=True)
class Kept:
    """Something `clean` left in place, and why."""

    what: str
    files: int
    bytes: int
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "files": self.files, "bytes": self.bytes, "why": self.why}


@dataclass
class CleanResult:
    """What `clean` did. Byte counts are allocated bytes of the files removed or kept."""

    path: Path
    removed_files: int = 0
    removed_bytes: int = 0
    #: the cache directory itself is gone
    removed_directory: bool = False
    kept: list[Kept] = field(default_factory=list)
    #: with force: the pending work that was thrown away, one line each
    discarded: list[str] = field(default_factory=list)

    @property
    def kept_files(self) -> int:
        return sum(k.files for k in self.kept)

    @property
    def kept_bytes(self) -> int:
        return sum(k.bytes for k in self.kept)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "removed_files": self.removed_files,
            "removed_bytes": self.removed_bytes,
            "removed_directory": self.removed_directory,
            "kept_files": self.kept_files,
            "kept_bytes": self.kept_bytes,
            "kept": [k.to_json() for k in self.kept],
            "discarded": list(self.discarded),
        }


# -- the public functions ----------------------------------------------------------------------


def find_caches(root: Path | None = None) -> list[CacheInfo]:
    """Every cache directory directly under `root` (default: `default_cache_root()`),
    sorted by name: subdirectories holding a store.json. Symlinks and other entries are
    skipped; a missing root gives []. Read-only; blocks on local disk only.

    Raises CacheError when the root or a cache in it cannot be read.
    """
    root = default_cache_root() if root is None else Path(root)
    try:
        with os.scandir(root) as entries:
            candidates = sorted(entry.name for entry in entries if entry.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CacheError(f"cannot list the caches in {root}: {exc.strerror}") from None
    found = []
    for name in candidates:
        try:
            found.append(describe(root / name))
        except NotACache:
            continue
    return found


def describe(path: Path | str) -> CacheInfo:
    """The `CacheInfo` of the cache directory at `path` (any path, as given to --cache-dir).

    Never modifies the cache (see the module docstring for how the journal is read and how
    in-use is tested). Raises NotACache for a path that is not a cache directory, and
    CacheError for one that cannot be read; an unreadable journal is not an error (the
    pending fields are then None). Blocks on local disk only.
    """
    path = Path(path).absolute()
    with _opened(path) as dir_fd:
        store_url = _store_url(dir_fd)
        in_use = _in_use(dir_fd)
        try:
            data = _data_files(dir_fd)
            index_bytes = _walk(dir_fd, "index")[1]
            journal_bytes = _walk(dir_fd, "journal")[1]
            lost_bytes = _walk(dir_fd, LOST_FOUND)[1]
            own_bytes = sum(_walk(dir_fd, name)[1] for name in ("lock", "store.json"))
            last_used = _last_used(dir_fd)
        except OSError as exc:
            raise CacheError(f"cannot read the cache {path}: {exc.strerror}") from None
        data_bytes = sum(size for size in data.values())
        pending_error: str | None = None
        journal: _JournalContents | None = None
        try:
            journal = _read_journal(path, dir_fd, in_use=in_use)
        except _JournalUnreadable as exc:
            pending_error = str(exc)
    clean_bytes: int | None = None
    pending_files: int | None = None
    pending_dirs: int | None = None
    dirty_bytes: int | None = None
    deletes: int | None = None
    uploads: int | None = None
    not_uploadable: int | None = None
    if journal is not None:
        items = journal.items()
        dirty_ids = journal.content_ids()
        clean_bytes = sum(size for name, size in data.items() if name not in dirty_ids)
        pending_files = sum(1 for item in items if item.kind in ("file", "symlink"))
        pending_dirs = sum(1 for item in items if item.kind == "dir")
        dirty_bytes = sum(item.dirty_bytes for item in items)
        deletes = sum(1 for item in items if item.kind == "delete")
        uploads = sum(max(1, len(item.upload_ids)) for item in items if item.kind == "upload")
        not_uploadable = sum(1 for item in items if item.not_uploadable is not None)
    return CacheInfo(
        path=path,
        store_url=store_url,
        in_use=in_use,
        last_used=last_used,
        total_bytes=data_bytes + index_bytes + journal_bytes + own_bytes,
        data_bytes=data_bytes,
        data_files=len(data),
        index_bytes=index_bytes,
        journal_bytes=journal_bytes,
        clean_bytes=clean_bytes,
        pending_files=pending_files,
        pending_dirs=pending_dirs,
        dirty_bytes=dirty_bytes,
        pending_deletes=deletes,
        unfinished_uploads=uploads,
        pending_error=pending_error,
        lost_files=len(_lost_entries(path / LOST_FOUND)),
        lost_bytes=lost_bytes,
        not_uploadable=not_uploadable,
    )


def pending_items(path: Path | str) -> list[PendingItem]:
    """Every piece of work the journal of the cache at `path` holds: files, symlinks and
    directories (sorted by key), then keys to delete, then unfinished multipart uploads.

    Read-only, also while a daemon uses the cache (a snapshot). Raises NotACache, or
    CacheError when the journal cannot be read. Blocks on local disk only.
    """
    path = Path(path).absolute()
    with _opened(path) as dir_fd:
        in_use = _in_use(dir_fd)
        try:
            return _read_journal(path, dir_fd, in_use=in_use).items()
        except _JournalUnreadable as exc:
            raise CacheError(f"cannot read the journal of {path}: {exc}") from None


def lost_entries(path: Path | str) -> list[LostEntry]:
    """What the lost+found of the cache at `path` holds (read-only)."""
    path = Path(path).absolute()
    with _opened(path):
        return _lost_entries(path / LOST_FOUND)


def recover(path: Path | str, target: Path | str) -> list[tuple[str, Path]]:
    """Copy what the cache at `path` holds that may not be in the store into `target`:
    every file of its lost+found (then removed from there), and, when its journal cannot
    be read, every non-empty data file its index does not name as a clean copy of the
    size it holds (those stay). Works while a daemon uses the cache (a daemon writes to lost+found only before
    it mounts). Returns (what, copied to). Raises CacheError. Blocks on local disk only."""
    path = Path(path).absolute()
    with _opened(path) as dir_fd:
        loose: list[Path] = []
        try:
            _read_journal(path, dir_fd, in_use=_in_use(dir_fd))
        except _JournalUnreadable:
            try:
                clean_sizes = _read_records(path, dir_fd, in_use=False, name="index").clean_sizes
            except _JournalUnreadable:
                clean_sizes = {}  # no index either: every data file may matter
            loose = [
                path / "data" / name
                for name, size in _data_files(dir_fd).items()
                if size and not _vouched_for(path / "data" / name, clean_sizes.get(name, -1))
            ]
        try:
            return _recover(path / LOST_FOUND, loose, Path(target))
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise CacheError(f"recovering into {target} stopped: {exc.strerror}{where}") from None


def _vouched_for(data: Path, indexed_size: int | None) -> bool:
    """Whether the data file `data` is the clean copy its index entry says (the size it
    states: an entry a power cut brought back may name a file changed since; a change
    that keeps the size goes unnoticed)."""
    try:
        return data.lstat().st_size == indexed_size
    except FileNotFoundError:
        return True  # gone meanwhile: nothing to copy


def clean(info: CacheInfo, force: bool = False) -> CleanResult:
    """Free the space of the cache at `info.path`, which no daemon may be using.

    The cache is examined again (`info` may be stale) while this process holds the cache's
    lock (when it has a lock file; none is created), so no daemon can start on it meanwhile.
    Without `force`: the data files no pending work needs and the index are removed; the
    journal, the data files holding changes not yet in the store, `lock` and `store.json`
    are kept, so the next mount of the store uploads every change. When the journal holds
    no work at all, the whole cache is removed. With `force` (the caller has asked the
    user): everything is removed, changes not yet in the store included
    (`CleanResult.discarded` says what was lost).

    Only the cache's own entries are removed; anything else in the directory is kept (and
    then so is the directory; likewise when the cache path is a symlink). Symlinks are
    unlinked, never followed. Raises CacheInUse (message: "... in use by a running daemon;
    unmount it first"), NotACache, or CacheError (unreadable journal without force, or a
    removal that failed). Blocks on local disk only.
    """
    path = Path(info.path).absolute()
    with _opened(path) as dir_fd:
        lock_fd = _lock(dir_fd, path)
        try:
            return _clean_locked(path, dir_fd, force)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise CacheError(
                f"cleaning {path} stopped: {exc.strerror}{where}; fix that and run the clean again"
            ) from None
        finally:
            if lock_fd is not None:
                os.close(lock_fd)


# -- cleaning ----------------------------------------------------------------------------------


def _clean_locked(path: Path, dir_fd: int, force: bool) -> CleanResult:
    result = CleanResult(path=path)
    try:
        journal: _JournalContents | None = _read_journal(path, dir_fd, in_use=False)
    except _JournalUnreadable as exc:
        if not force:
            raise CacheError(
                f"cannot read the journal of {path} ({exc}); nothing was removed; "
                "clean --force removes the cache with whatever changes it holds"
            ) from None
        journal = None
        result.discarded.append(f"the journal could not be read ({exc}): whatever it held is lost")
    lost = _walk(dir_fd, LOST_FOUND)
    if journal is not None and (journal.has_work() or lost[0]) and not force:
        _clean_keeping_pending(dir_fd, journal, result)
        return result
    if journal is not None and force:
        result.discarded.extend(journal.losses())
    if lost[0] and force:
        result.discarded.append(f"{lost[0]} file(s) of lost+found, not in the store")
    # The journal first: interrupted, what is left never names data that is gone (the next
    # mount would upload such a file as zeros); store.json last: what is left is still a cache.
    for name in REMOVAL_ORDER:
        files, size = _walk(dir_fd, name, remove=True)
        result.removed_files += files
        result.removed_bytes += size
    for name in _names(dir_fd):
        files, size = _walk(dir_fd, name)
        result.kept.append(Kept(name, files, size, "not a fusestore cache file: left for you to remove"))
    if result.kept:
        return result
    if path.is_symlink():
        result.kept.append(Kept(str(path), 0, 0, "reached through a symlink: the empty directory is kept"))
        return result
    try:
        os.rmdir(path)
    except OSError as exc:  # something was created meanwhile: keep it
        result.kept.append(Kept(str(path), 0, 0, f"the directory could not be removed: {exc.strerror}"))
    else:
        result.removed_directory = True
    return result


def _clean_keeping_pending(dir_fd: int, journal: _JournalContents, result: CleanResult) -> None:
    dirty_ids = journal.content_ids()
    kept_files = kept_bytes = 0
    st = _lstat("data", dir_fd)
    if st is not None and stat.S_ISDIR(st.st_mode):
        data_fd = os.open("data", _DIR_FLAGS, dir_fd=dir_fd)
        try:
            for name in _names(data_fd):
                if name in dirty_ids:
                    files, size = _walk(data_fd, name)
                    kept_files += files
                    kept_bytes += size
                else:
                    files, size = _walk(data_fd, name, remove=True)
                    result.removed_files += files
                    result.removed_bytes += size
        finally:
            os.close(data_fd)
    elif st is not None:  # not a directory (a symlink?): not ours to keep
        files, size = _walk(dir_fd, "data", remove=True)
        result.removed_files += files
        result.removed_bytes += size
    files, size = _walk(dir_fd, "index", remove=True)
    result.removed_files += files
    result.removed_bytes += size

    items = journal.items()
    files, size = _walk(dir_fd, "journal")
    result.kept.append(
        Kept("journal", files, size, f"{len(items)} pending item(s) to resume at the next mount of the store")
    )
    if kept_files:
        result.kept.append(Kept("data", kept_files, kept_bytes, "changes not yet in the store"))
    files = size = 0
    for name in ("lock", "store.json"):
        more_files, more_size = _walk(dir_fd, name)
        files += more_files
        size += more_size
    result.kept.append(Kept("lock, store.json", files, size, "the next mount needs them to resume"))
    files, size = _walk(dir_fd, LOST_FOUND)
    if files:
        result.kept.append(Kept(LOST_FOUND, files, size, "not in the store: fusestore cache recover"))
    for name in _names(dir_fd):
        if name not in CACHE_ENTRIES:
            files, size = _walk(dir_fd, name)
            result.kept.append(Kept(name, files, size, "not a fusestore cache file: left for you to remove"))


def _lock(dir_fd: int, path: Path) -> int | None:
    """Hold the cache's lock (exclusive, as a daemon does) so that no daemon starts while we
    clean. None when there is no lock file (it is not created)."""
    try:
        fd = os.open("lock", os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CacheError(f"cannot open the lock of {path}: {exc.strerror}; nothing was removed") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CacheInUse(f"{path} is in use by a running daemon; unmount it first") from None
    return fd


# -- the directory -----------------------------------------------------------------------------


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[int]:
    """A descriptor of the cache directory at `path` (which must hold a store.json)."""
    try:
        dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotACache(f"{path} does not exist; fusestore cache list shows the caches") from None
    except NotADirectoryError:
        raise NotACache(f"{path} is not a directory, so not a fusestore cache") from None
    except OSError as exc:
        raise CacheError(f"cannot open {path}: {exc.strerror}") from None
    try:
        marker = _lstat("store.json", dir_fd)
        if marker is None or not stat.S_ISREG(marker.st_mode):
            raise NotACache(f"{path} is not a fusestore cache directory (no store.json); nothing was changed")
        yield dir_fd
    finally:
        os.close(dir_fd)


def _store_url(dir_fd: int) -> str | None:
    try:
        fd = os.open("store.json", _FILE_FLAGS, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as marker:
            url = json.loads(marker.read(1 << 16)).get("url")
    except (OSError, ValueError, AttributeError):
        return None
    return url if isinstance(url, str) else None


def _in_use(dir_fd: int) -> bool:
    """Whether another process holds the flock on `lock` (a shared, non-blocking probe on a
    descriptor of our own, released at once; a missing lock file is not created)."""
    try:
        fd = os.open("lock", _FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return False  # missing, or a symlink: no daemon locks that
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing releases the probe
    return False


def _last_used(dir_fd: int) -> float | None:
    times = []
    for name in ("lock", f"journal/{JOURNAL_DB}", f"journal/{JOURNAL_DB}-wal"):
        st = _lstat(name, dir_fd)
        if st is not None:
            times.append(st.st_mtime)
    return max(times, default=None)


def _data_files(dir_fd: int) -> dict[str, int]:
    """Content id -> allocated bytes of every entry of data/ (symlinks not followed)."""
    st = _lstat("data", dir_fd)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return {}
    data_fd = os.open("data", _DIR_FLAGS, dir_fd=dir_fd)
    try:
        return {name: _walk(data_fd, name)[1] for name in _names(data_fd)}
    finally:
        os.close(data_fd)


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _names(dir_fd: int) -> list[str]:
    with os.scandir(dir_fd) as entries:
        return sorted(entry.name for entry in entries)


def _walk(dir_fd: int, name: str, *, remove: bool = False) -> tuple[int, int]:
    """Files and their allocated bytes at `name` (in `dir_fd`) and below, without following
    a symlink; all of it removed when `remove`. A missing `name` counts nothing."""
    st = _lstat(name, dir_fd)
    if st is None:
        return 0, 0
    if not stat.S_ISDIR(st.st_mode):
        if remove:
            os.unlink(name, dir_fd=dir_fd)
        return 1, st.st_blocks * 512
    files = size = 0
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        for child in _names(fd):
            more_files, more_size = _walk(fd, child, remove=remove)
            files += more_files
            size += more_size
    finally:
        os.close(fd)
    if remove:
        os.rmdir(name, dir_fd=dir_fd)
    return files, size


# -- the journal -------------------------------------------------------------------------------


class _JournalUnreadable(Exception):
    pass


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain data only (dicts, lists, tuples, strings, numbers, None)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"unexpected {module}.{name}")


def _unpickle(data: bytes) -> Any:
    return _PlainUnpickler(io.BytesIO(data)).load()


@dataclass
class _JournalContents:
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


def _read_journal(path: Path, dir_fd: int, *, in_use: bool) -> _JournalContents:
    """The records of the journal and the sizes of the cache files they name, read
    without changing (or creating) any file of the cache."""
    contents = _read_records(path, dir_fd, in_use=in_use)
    ids = contents.content_ids()
    st = _lstat("data", dir_fd)
    if not ids or st is None or not stat.S_ISDIR(st.st_mode):
        return contents
    try:
        data_fd = os.open("data", _DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        return contents  # unreadable: the records' own sizes stand
    try:
        for content_id in ids:
            if "/" in content_id or content_id in ("", ".", ".."):
                continue  # not a name the daemon makes: the record's own size stands
            st = _lstat(content_id, data_fd)
            if st is not None and stat.S_ISREG(st.st_mode):
                contents.content_sizes[content_id] = st.st_size
    finally:
        os.close(data_fd)
    return contents


def _read_records(path: Path, dir_fd: int, *, in_use: bool, name: str = "journal") -> _JournalContents:
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
    st = _lstat(name, dir_fd)
    if st is None:
        if expected is not None:
            raise _JournalUnreadable(f"{name} is missing, and {ID_FILE} expects one")
        return _JournalContents()
    if not stat.S_ISDIR(st.st_mode):
        raise _JournalUnreadable(f"{name} is not a directory")
    try:
        journal_fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _JournalUnreadable(str(exc.strerror)) from None
    try:
        contents = _query_db(path / name, journal_fd, in_use=in_use)
    except OSError as exc:
        raise _JournalUnreadable(str(exc.strerror or exc)) from None
    finally:
        os.close(journal_fd)
    if expected is not None and contents.journal_id != expected:
        raise _JournalUnreadable(f"its records are gone: {ID_FILE} names journal {expected}")
    return contents


def _journal_id(dir_fd: int) -> str | None:
    """The id `journal.id` names (None: no such file, as in caches made before it)."""
    try:
        fd = os.open(ID_FILE, _FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _JournalUnreadable(f"{ID_FILE}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as marker:
        return marker.read(256).decode(errors="replace").strip()


def _query_db(directory: Path, journal_fd: int, *, in_use: bool) -> _JournalContents:
    db = _lstat(JOURNAL_DB, journal_fd)
    if db is None:
        return _JournalContents()
    if not stat.S_ISREG(db.st_mode):
        raise _JournalUnreadable(f"{directory.name}/{JOURNAL_DB} is not a regular file")
    db_path = directory / JOURNAL_DB
    wal = _lstat(f"{JOURNAL_DB}-wal", journal_fd)
    if in_use and wal is not None and _lstat(f"{JOURNAL_DB}-shm", journal_fd) is not None:
        return _query(f"{_uri(db_path)}?mode=ro", journal_fd)
    if wal is None or wal.st_size == 0:
        # Every record is in the database file, which only a checkpoint writes to.
        return _query(f"{_uri(db_path)}?mode=ro&immutable=1", journal_fd)
    with tempfile.TemporaryDirectory(prefix="fusestore-journal-") as scratch:
        for name in (JOURNAL_DB, f"{JOURNAL_DB}-wal"):
            _copy_out(journal_fd, name, Path(scratch) / name)
        damage = check_wal(Path(scratch) / f"{JOURNAL_DB}-wal")
        if damage is not None:
            raise _JournalUnreadable(damage)
        return _query(f"{_uri(Path(scratch) / JOURNAL_DB)}?mode=ro", journal_fd)


def _uri(db_path: Path) -> str:
    return "file:" + urllib.parse.quote(str(db_path))


def _copy_out(dir_fd: int, name: str, target: Path) -> None:
    fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as source, open(target, "wb") as copy:
        while chunk := source.read(1 << 20):
            copy.write(chunk)


def _query(uri: str, journal_fd: int) -> _JournalContents:
    contents = _JournalContents()
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
                    raise _JournalUnreadable(f"a {kind} record is not a dict")
                (contents.nodes if kind == "node" else contents.uploads)[name] = value
    except (sqlite3.Error, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise _JournalUnreadable(f"{type(exc).__name__}: {exc}") from None
    return contents


def _value(mode: int, filename: str | None, db_value: Any, journal_fd: int) -> Any:
    if mode == _MODE_RAW:
        return db_value
    if mode != _MODE_PICKLE:
        raise _JournalUnreadable(f"unexpected value mode {mode}")
    if db_value is not None:
        return _unpickle(bytes(db_value))
    # A large value lives in a file of the journal directory (diskcache: "ab/cd/<hex>.val").
    parts = str(filename or "").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise _JournalUnreadable(f"unexpected value file name {filename!r}")
    fds: list[int] = []
    try:
        current = journal_fd
        for part in parts[:-1]:
            current = os.open(part, _DIR_FLAGS, dir_fd=current)
            fds.append(current)
        fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=current)
        with os.fdopen(fd, "rb") as value_file:
            return _unpickle(value_file.read())
    finally:
        for fd in fds:
            os.close(fd)

"""Cleaning a cache: freeing its space without losing work not yet in the store.

`clean` holds the cache's lock while it works, so no daemon starts on the cache
meanwhile. Without force it keeps the journal and every data file the journal names;
it reads the journal only as `journalread` does (never writing it). Only the cache's own
entries (`cachedir.CACHE_ENTRIES`) are removed, so a cache directory shared with other
files loses none of them, and symlinks are unlinked, never followed. Blocks on local disk
only.
"""

from __future__ import annotations

import fcntl
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..dbread import DIR_FLAGS, Unreadable, lstat
from ..journal import ID_FILE
from ..recovery import LOST_FOUND
from .cachedir import CACHE_ENTRIES, names, opened, walk
from .errors import CacheError, CacheInUse
from .journalread import Pending, read_pending
from .survey import CacheInfo

#: The order `clean` removes them in when it removes them all.
REMOVAL_ORDER = (ID_FILE, "journal", "index", "data", LOST_FOUND, "lock", "store.json")


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
    with opened(path) as dir_fd:
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


def _clean_locked(path: Path, dir_fd: int, force: bool) -> CleanResult:
    result = CleanResult(path=path)
    try:
        journal: Pending | None = read_pending(path, dir_fd, in_use=False)
    except Unreadable as exc:
        if not force:
            raise CacheError(
                f"cannot read the journal of {path} ({exc}); nothing was removed; "
                "clean --force removes the cache with whatever changes it holds"
            ) from None
        journal = None
        result.discarded.append(f"the journal could not be read ({exc}): whatever it held is lost")
    lost = walk(dir_fd, LOST_FOUND)
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
        files, size = walk(dir_fd, name, remove=True)
        result.removed_files += files
        result.removed_bytes += size
    for name in names(dir_fd):
        files, size = walk(dir_fd, name)
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


def _clean_keeping_pending(dir_fd: int, journal: Pending, result: CleanResult) -> None:
    dirty_ids = journal.content_ids()
    kept_files = kept_bytes = 0
    st = lstat("data", dir_fd)
    if st is not None and stat.S_ISDIR(st.st_mode):
        data_fd = os.open("data", DIR_FLAGS, dir_fd=dir_fd)
        try:
            for name in names(data_fd):
                if name in dirty_ids:
                    files, size = walk(data_fd, name)
                    kept_files += files
                    kept_bytes += size
                else:
                    files, size = walk(data_fd, name, remove=True)
                    result.removed_files += files
                    result.removed_bytes += size
        finally:
            os.close(data_fd)
    elif st is not None:  # not a directory (a symlink?): not ours to keep
        files, size = walk(dir_fd, "data", remove=True)
        result.removed_files += files
        result.removed_bytes += size
    files, size = walk(dir_fd, "index", remove=True)
    result.removed_files += files
    result.removed_bytes += size

    items = journal.items()
    files, size = walk(dir_fd, "journal")
    result.kept.append(
        Kept("journal", files, size, f"{len(items)} pending item(s) to resume at the next mount of the store")
    )
    if kept_files:
        result.kept.append(Kept("data", kept_files, kept_bytes, "changes not yet in the store"))
    files = size = 0
    for name in ("lock", "store.json"):
        more_files, more_size = walk(dir_fd, name)
        files += more_files
        size += more_size
    result.kept.append(Kept("lock, store.json", files, size, "the next mount needs them to resume"))
    files, size = walk(dir_fd, LOST_FOUND)
    if files:
        result.kept.append(Kept(LOST_FOUND, files, size, "not in the store: fusestore cache recover"))
    for name in names(dir_fd):
        if name not in CACHE_ENTRIES:
            files, size = walk(dir_fd, name)
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

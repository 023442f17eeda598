"""A cache directory on disk, opened and walked without ever following a symlink.

Every entry is opened relative to a descriptor of the cache directory with O_NOFOLLOW
(the cache path itself may be a symlink; nothing inside it is followed), so a symlink
planted in the cache can neither be read through nor make a removal reach outside it.
`walk` counts (and with `remove` deletes) one entry and what is below it.
`in_use_by_daemon` tests whether a daemon holds the cache's lock with a non-blocking
shared flock on a descriptor of its own, released at once, and never creates the lock
file (for that instant a daemon starting on the same cache would be told the cache is in
use; it is never broken). Every function blocks on local disk only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ..dbread import DIR_FLAGS, FILE_FLAGS, lstat
from ..journal import ID_FILE
from ..recovery import LOST_FOUND
from .errors import CacheError, NotACache

#: The entries of a cache directory that belong to fusestore (and only those are removed).
CACHE_ENTRIES = ("data", "index", "journal", ID_FILE, LOST_FOUND, "lock", "store.json")


@contextlib.contextmanager
def opened(path: Path) -> Iterator[int]:
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
        marker = lstat("store.json", dir_fd)
        if marker is None or not stat.S_ISREG(marker.st_mode):
            raise NotACache(f"{path} is not a fusestore cache directory (no store.json); nothing was changed")
        yield dir_fd
    finally:
        os.close(dir_fd)


def in_use_by_daemon(dir_fd: int) -> bool:
    """Whether another process holds the flock on `lock` (a shared, non-blocking probe on a
    descriptor of our own, released at once; a missing lock file is not created)."""
    try:
        fd = os.open("lock", FILE_FLAGS, dir_fd=dir_fd)
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


def data_files(dir_fd: int) -> dict[str, int]:
    """Content id -> allocated bytes of every entry of data/ (symlinks not followed)."""
    st = lstat("data", dir_fd)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return {}
    data_fd = os.open("data", DIR_FLAGS, dir_fd=dir_fd)
    try:
        return {name: walk(data_fd, name)[1] for name in names(data_fd)}
    finally:
        os.close(data_fd)


def names(dir_fd: int) -> list[str]:
    with os.scandir(dir_fd) as entries:
        return sorted(entry.name for entry in entries)


def walk(dir_fd: int, name: str, *, remove: bool = False) -> tuple[int, int]:
    """Files and their allocated bytes at `name` (in `dir_fd`) and below, without following
    a symlink; all of it removed when `remove`. A missing `name` counts nothing."""
    st = lstat(name, dir_fd)
    if st is None:
        return 0, 0
    if not stat.S_ISDIR(st.st_mode):
        if remove:
            os.unlink(name, dir_fd=dir_fd)
        return 1, st.st_blocks * 512
    files = size = 0
    fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    try:
        for child in names(fd):
            more_files, more_size = walk(fd, child, remove=remove)
            files += more_files
            size += more_size
    finally:
        os.close(fd)
    if remove:
        os.rmdir(name, dir_fd=dir_fd)
    return files, size

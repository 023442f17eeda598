"""A diskcache directory (the journal, the index) read without writing to it.

No file of the directory changes, none is created, and no lock of the daemon's is taken:
the database is read through a read-only SQLite connection next to a running daemon's
(concurrent WAL reads are safe; what is read is a snapshot, maybe stale by the time it is
used), as an immutable file when it has no write-ahead log, or, when a daemon that was
killed left a log behind, from a private copy of the database and its log. Keys and
values are unpickled as plain data only (dicts, lists, tuples, strings, numbers, None):
no file can make this process run code. Entries are opened relative to a descriptor with
O_NOFOLLOW, never through a symlink. Every function blocks on local disk only, plus at
most `BUSY_TIMEOUT` of SQLite's busy wait while a running daemon holds the write lock.
"""

from __future__ import annotations

import io
import os
import pickle
import sqlite3
import stat
import tempfile
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .recovery import check_wal

#: diskcache's database file in its directory
DB_FILE = "cache.db"
#: How long a read waits for a running daemon's SQLite lock, in seconds.
BUSY_TIMEOUT = 5.0
#: How every entry below a cache directory is opened: never through a symlink.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
#: diskcache's value modes (diskcache.core.MODE_RAW, MODE_PICKLE)
_MODE_RAW = 1
_MODE_PICKLE = 4


class Unreadable(Exception):
    """The journal (or the index) cannot be read; the message says why, in a few words."""


def lstat(name: str, dir_fd: int) -> os.stat_result | None:
    """`name` in `dir_fd`, not followed if a symlink; None when it does not exist."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain data only (dicts, lists, tuples, strings, numbers, None)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"unexpected {module}.{name}")


def unpickle(data: bytes) -> Any:
    """`data` unpickled as plain data only (anything else raises UnpicklingError)."""
    return _PlainUnpickler(io.BytesIO(data)).load()


def read_rows(
    parent: Path, parent_fd: int, name: str, wanted: Callable[[Any], bool], *, in_use: bool
) -> list[tuple[Any, Any]] | None:
    """Every (key, value) of the diskcache directory `name` in `parent` (open as
    `parent_fd`: nothing below it is reached through a symlink) whose key is pickled
    (diskcache stores strings, bytes and numbers raw; every key fusestore writes is a
    tuple) and `wanted` (only those values are read): None when there is no such
    directory, [] when it holds no database.

    `in_use`: a daemon holds the cache, so its write-ahead log and shared memory are live.
    Raises Unreadable.
    """
    st = lstat(name, parent_fd)
    if st is None:
        return None
    if not stat.S_ISDIR(st.st_mode):
        raise Unreadable(f"{name} is not a directory")
    try:
        dir_fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        raise Unreadable(str(exc.strerror)) from None
    try:
        return _read_db(parent / name, dir_fd, wanted, in_use=in_use)
    except OSError as exc:
        raise Unreadable(str(exc.strerror or exc)) from None
    finally:
        os.close(dir_fd)


def _read_db(
    directory: Path, dir_fd: int, wanted: Callable[[Any], bool], *, in_use: bool
) -> list[tuple[Any, Any]]:
    db = lstat(DB_FILE, dir_fd)
    if db is None:
        return []
    if not stat.S_ISREG(db.st_mode):
        raise Unreadable(f"{directory.name}/{DB_FILE} is not a regular file")
    db_path = directory / DB_FILE
    wal = lstat(f"{DB_FILE}-wal", dir_fd)
    if in_use and wal is not None and lstat(f"{DB_FILE}-shm", dir_fd) is not None:
        return _query(f"{_uri(db_path)}?mode=ro", dir_fd, wanted)
    if wal is None or wal.st_size == 0:
        # Every record is in the database file, which only a checkpoint writes to.
        return _query(f"{_uri(db_path)}?mode=ro&immutable=1", dir_fd, wanted)
    with tempfile.TemporaryDirectory(prefix="fusestore-journal-") as scratch:
        for file_name in (DB_FILE, f"{DB_FILE}-wal"):
            _copy_out(dir_fd, file_name, Path(scratch) / file_name)
        damage = check_wal(Path(scratch) / f"{DB_FILE}-wal")
        if damage is not None:
            raise Unreadable(damage)
        return _query(f"{_uri(Path(scratch) / DB_FILE)}?mode=ro", dir_fd, wanted)


def _uri(db_path: Path) -> str:
    return "file:" + urllib.parse.quote(str(db_path))


def _copy_out(dir_fd: int, name: str, target: Path) -> None:
    fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as source, open(target, "wb") as copy:
        while chunk := source.read(1 << 20):
            copy.write(chunk)


def _query(uri: str, dir_fd: int, wanted: Callable[[Any], bool]) -> list[tuple[Any, Any]]:
    try:
        con = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT)
        try:
            rows = con.execute("SELECT key, mode, filename, value FROM Cache WHERE raw = 0").fetchall()
        finally:
            con.close()
        found = []
        for db_key, mode, filename, db_value in rows:
            key = unpickle(bytes(db_key))
            if wanted(key):
                found.append((key, _value(mode, filename, db_value, dir_fd)))
        return found
    except (sqlite3.Error, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise Unreadable(f"{type(exc).__name__}: {exc}") from None


def _value(mode: int, filename: str | None, db_value: Any, dir_fd: int) -> Any:
    if mode == _MODE_RAW:
        return db_value
    if mode != _MODE_PICKLE:
        raise Unreadable(f"unexpected value mode {mode}")
    if db_value is not None:
        return unpickle(bytes(db_value))
    # A large value lives in a file of the directory (diskcache: "ab/cd/<hex>.val").
    parts = str(filename or "").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise Unreadable(f"unexpected value file name {filename!r}")
    fds: list[int] = []
    try:
        current = dir_fd
        for part in parts[:-1]:
            current = os.open(part, DIR_FLAGS, dir_fd=current)
            fds.append(current)
        fd = os.open(parts[-1], FILE_FLAGS, dir_fd=current)
        with os.fdopen(fd, "rb") as value_file:
            return unpickle(value_file.read())
    finally:
        for fd in fds:
            os.close(fd)

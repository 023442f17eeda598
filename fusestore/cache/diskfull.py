"""A full cache disk, as SQLite reports it, turned into the OSError the rest expects."""

from __future__ import annotations

import contextlib
import errno
import logging
import sqlite3
from collections.abc import Iterator
from typing import Any

import diskcache

from .keydisk import KeyCachingDisk

log = logging.getLogger(__name__)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)


@contextlib.contextmanager
def disk_errors(what: str) -> Iterator[None]:
    """SQLite's "database or disk is full" becomes OSError(ENOSPC) naming `what`."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if is_disk_full(exc):
            raise OSError(errno.ENOSPC, f"the cache disk is full ({what})") from exc
        raise


class Index(diskcache.Cache):  # type: ignore[misc]  # diskcache has no type hints
    """The cache's index: remembered listings, object metadata and clean contents.

    Only ever a cache, so an entry that cannot be written because the disk is full is
    skipped (with a warning), never an error: it costs a request later, nothing else.
    Deleting an entry must not fail silently (a stale listing would come back), so a
    delete on a full disk raises OSError(ENOSPC).
    """

    def __init__(self, directory: str, **settings: Any) -> None:
        super().__init__(directory, disk=KeyCachingDisk, **settings)

    def set(self, key: Any, value: Any, *args: Any, **kwargs: Any) -> bool:
        try:
            return bool(super().set(key, value, *args, **kwargs))
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            log.warning("the cache disk is full: not remembering %r", key)
            return False

    def delete(self, key: Any, *args: Any, **kwargs: Any) -> bool:
        with disk_errors("index"):
            return bool(super().delete(key, *args, **kwargs))

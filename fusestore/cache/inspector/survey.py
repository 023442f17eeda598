"""Finding the caches on this machine and describing what each one holds.

Read-only: no file of a cache changes (the journal is read as `journalread` says, the
in-use test is `cachedir.in_use_by_daemon`'s probe, symlinks inside a cache are never
followed). Every function blocks on local disk only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..dbread import FILE_FLAGS, Unreadable, lstat
from ..layout import default_cache_root
from ..recovery import LOST_FOUND
from ..recovery import lost_entries as _lost_entries
from .cachedir import data_files, in_use_by_daemon, opened, walk
from .errors import CacheError, NotACache
from .journalread import JOURNAL_DB, LEAF_KINDS, Pending, read_pending


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
    with opened(path) as dir_fd:
        store_url = _store_url(dir_fd)
        in_use = in_use_by_daemon(dir_fd)
        try:
            data = data_files(dir_fd)
            index_bytes = walk(dir_fd, "index")[1]
            journal_bytes = walk(dir_fd, "journal")[1]
            lost_bytes = walk(dir_fd, LOST_FOUND)[1]
            own_bytes = sum(walk(dir_fd, name)[1] for name in ("lock", "store.json"))
            last_used = _last_used(dir_fd)
        except OSError as exc:
            raise CacheError(f"cannot read the cache {path}: {exc.strerror}") from None
        data_bytes = sum(size for size in data.values())
        pending_error: str | None = None
        journal: Pending | None = None
        try:
            journal = read_pending(path, dir_fd, in_use=in_use)
        except Unreadable as exc:
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
        pending_files = sum(1 for item in items if item.kind in LEAF_KINDS)
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


def _store_url(dir_fd: int) -> str | None:
    try:
        fd = os.open("store.json", FILE_FLAGS, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as marker:
            url = json.loads(marker.read(1 << 16)).get("url")
    except (OSError, ValueError, AttributeError):
        return None
    return url if isinstance(url, str) else None


def _last_used(dir_fd: int) -> float | None:
    times = []
    for name in ("lock", f"journal/{JOURNAL_DB}", f"journal/{JOURNAL_DB}-wal"):
        st = lstat(name, dir_fd)
        if st is not None:
            times.append(st.st_mtime)
    return max(times, default=None)

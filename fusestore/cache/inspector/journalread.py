"""The journal of a cache, read-only: the work it holds for the next mount.

The journal is read by `fusestore.cache.journal.read_journal`, its records as that module
declares them: never written, no file of the cache changed, records unpickled as plain
data only (no journal can make this process run code), no symlink followed (see
`fusestore.cache.dbread`). Every function blocks on local disk only, plus at most
`JOURNAL_TIMEOUT` of SQLite's busy wait while a running daemon holds the journal's write
lock.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..dbread import BUSY_TIMEOUT, DB_FILE, DIR_FLAGS, Unreadable, lstat
from ..journal import NodeRecord, Records, read_journal
from .cachedir import in_use_by_daemon, opened
from .errors import CacheError

JOURNAL_DB = DB_FILE
#: How long a read of the journal waits for a running daemon's SQLite lock, in seconds.
JOURNAL_TIMEOUT = BUSY_TIMEOUT


#: The kinds of journal records of nodes that are not directories.
LEAF_KINDS = ("file", "symlink", "fifo", "socket", "chardev", "blockdev")


@dataclass(frozen=True)
class PendingItem:
    """One piece of work the journal holds for the next mount.

    `kind` is "file", "symlink", "dir" or a special file's ("fifo", "socket", "chardev",
    "blockdev") for a journal record of a node, "delete" for a
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
            return read_pending(path, dir_fd, in_use=in_use).items()
        except Unreadable as exc:
            raise CacheError(f"cannot read the journal of {path}: {exc}") from None


@dataclass
class Pending:
    """The records of a journal, and the sizes of the data files they name."""

    records: Records
    #: content id -> size of its cache file: a file's size (its record's may be up to a
    #: persist behind, as the daemon takes the size from the cache file too)
    content_sizes: dict[str, int] = field(default_factory=dict)

    def has_work(self) -> bool:
        return bool(self.records.nodes or self.records.deletes or self.records.uploads)

    def content_ids(self) -> set[str]:
        return self.records.content_ids()

    def items(self) -> list[PendingItem]:
        nodes = sorted(
            (_node_item(rec, self.content_sizes) for rec in self.records.node_records().values()),
            key=lambda item: item.key,
        )
        deletes = [PendingItem("delete", key) for key in sorted(self.records.deletes)]
        uploads = [
            PendingItem("upload", key, upload_ids=tuple(rec.ids))
            for key, rec in sorted(self.records.upload_records().items())
        ]
        return nodes + deletes + uploads

    def losses(self) -> list[str]:
        """What removing this journal throws away, one line each."""
        items = self.items()
        lost = []
        files = [i for i in items if i.kind in LEAF_KINDS]
        if files:
            dirty = sum(i.dirty_bytes for i in files)
            lost.append(f"{len(files)} file(s) with changes not yet in the store ({dirty} bytes of data)")
        dirs = sum(1 for i in items if i.kind == "dir")
        if dirs:
            lost.append(f"{dirs} directory marker(s) not yet written or deleted in the store")
        if self.records.deletes:
            lost.append(f"{len(self.records.deletes)} key(s) not yet deleted from the store")
        if self.records.uploads:
            lost.append(
                f"{len(self.records.uploads)} multipart upload(s) possibly left unfinished in the store "
                "(they cost storage until aborted, e.g. by a lifecycle rule)"
            )
        return lost


def _node_item(rec: NodeRecord, content_sizes: dict[str, int]) -> PendingItem:
    if rec.kind == "dir":
        return PendingItem("dir", rec.key, metadata=rec.meta_dirty, not_uploadable=rec.parked)
    data = rec.data_dirty or rec.remote_key is None
    size = content_sizes.get(rec.content, rec.size) if rec.content is not None else rec.size
    return PendingItem(
        rec.kind or "file",
        rec.key,
        dirty_bytes=size if data else 0,
        data=data,
        metadata=rec.meta_dirty,
        moved_from=rec.remote_key if rec.remote_key is not None and rec.remote_key != rec.key else None,
        content=rec.content,
        not_uploadable=rec.parked,
    )


def read_pending(path: Path, dir_fd: int, *, in_use: bool) -> Pending:
    """The records of the journal and the sizes of the cache files they name, read
    without changing (or creating) any file of the cache. Raises Unreadable."""
    pending = Pending(read_journal(path, dir_fd, in_use=in_use))
    ids = pending.content_ids()
    st = lstat("data", dir_fd)
    if not ids or st is None or not stat.S_ISDIR(st.st_mode):
        return pending
    try:
        data_fd = os.open("data", DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        return pending  # unreadable: the records' own sizes stand
    try:
        for content_id in ids:
            if "/" in content_id or content_id in ("", ".", ".."):
                continue  # not a name the daemon makes: the record's own size stands
            st = lstat(content_id, data_fd)
            if st is not None and stat.S_ISREG(st.st_mode):
                pending.content_sizes[content_id] = st.st_size
    finally:
        os.close(data_fd)
    return pending

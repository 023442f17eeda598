"""The journal: every change not yet in the store, so that no restart can lose it.

Records are small dicts in a diskcache (SQLite, WAL): one per file, symlink or directory
with pending work (keyed by a journal id that survives renames), and one per key that
still has to be deleted from the store. A record is written when the change is made and
removed only once the store holds the result. A third kind names multipart uploads we
started and have not finished, so that a crash cannot leave them behind in the store.

Commits are NORMAL-synchronous (WAL): they survive the daemon being killed at once, and
`sync` (in a worker thread: it fsyncs) makes them survive a power cut too. Measured here:
0.06 ms per record instead of 0.46 ms with an fsync per commit on the trio thread.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskcache

from .diskfull import disk_errors
from .keydisk import KeyCachingDisk


class Journal:
    """Durable pending work. Every method but `sync` is a small inline SQLite transaction
    (safe from any thread); `sync` blocks on fsync."""

    def __init__(self, path: Path) -> None:
        self.path = path
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
        #: bumped by every change; `sync` compares it to skip work when nothing changed
        self.changes = 0
        self._synced = 0
        self._sync_lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """A context in which every change is one SQLite transaction (for many at once):
        all of them are written, or none (a full disk, at any of them or at the commit,
        raises OSError(ENOSPC))."""
        with disk_errors("journal"), self._db.transact():
            yield

    def save_node(self, jid: str, record: dict[str, Any]) -> None:
        with disk_errors("journal"):
            self._db.set(("node", jid), record)
        self.changes += 1

    def drop_node(self, jid: str) -> None:
        with disk_errors("journal"):
            self._db.delete(("node", jid))
        self.changes += 1

    def add_delete(self, key: str) -> None:
        with disk_errors("journal"):
            self._db.set(("delete", key), True)
        self.changes += 1

    def drop_delete(self, key: str) -> None:
        with disk_errors("journal"):
            self._db.delete(("delete", key))
        self.changes += 1

    def add_upload(self, key: str, upload_id: str | None) -> None:
        """A multipart upload to `key` is about to start (id None) or has started.

        Recorded before the request goes out, with the time, so that an upload whose id
        never reached us can still be recognised (same key, started since) and aborted.
        """
        record = self._db.get(("upload", key)) or {"since": time.time(), "ids": []}
        if upload_id is not None and upload_id not in record["ids"]:
            record["ids"].append(upload_id)
        with disk_errors("journal"):
            self._db.set(("upload", key), record)
        self.changes += 1

    def drop_upload(self, key: str, upload_id: str) -> None:
        """The upload was completed or aborted."""
        record = self._db.get(("upload", key))
        if record is None:
            return
        ids = [i for i in record["ids"] if i != upload_id]
        if ids:
            self._db.set(("upload", key), {**record, "ids": ids})
        else:
            self._db.delete(("upload", key))
        self.changes += 1

    def forget_uploads(self, key: str) -> None:
        """Every upload to `key` we knew of is gone."""
        self._db.delete(("upload", key))
        self.changes += 1

    def uploads(self) -> dict[str, dict[str, Any]]:
        """key -> {"since": unix time, "ids": [...]} of uploads possibly left unfinished."""
        found = {}
        for key in self._db.iterkeys():
            if key[0] == "upload":
                record = self._db.get(key)
                if record is not None:
                    found[key[1]] = record
        return found

    def needs_sync(self) -> bool:
        return self.changes > self._synced

    def sync(self) -> None:
        """Make every change so far survive a power cut (blocks: fsync)."""
        with self._sync_lock:
            target = self.changes
            if not self.needs_sync():
                return
            # In WAL mode a commit is durable once the WAL is; a checkpoint (SQLite's own,
            # every 1000 pages) fsyncs the WAL before and the database after it copies.
            wal = self.path / "cache.db-wal"
            try:
                fd = os.open(wal, os.O_RDONLY)
            except FileNotFoundError:
                pass  # checkpointed and removed: everything is in the database file
            else:
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            self._synced = target

    def nodes(self) -> dict[str, dict[str, Any]]:
        found = {}
        for key in self._db.iterkeys():
            if key[0] == "node":
                record = self._db.get(key)
                if record is not None:
                    found[key[1]] = record
        return found

    def deletes(self) -> list[str]:
        return [key[1] for key in self._db.iterkeys() if key[0] == "delete"]

    def __len__(self) -> int:
        return len(self._db)

"""The journal: every change not yet in the store, so that no restart can lose it.

Records are small dicts in a diskcache (SQLite, WAL): one per file, symlink or directory
with pending work (keyed by a journal id that survives renames), and one per key that
still has to be deleted from the store. A record is written when the change is made and
removed only once the store holds the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import diskcache


class Journal:
    """Durable pending work. Every method is a small inline SQLite transaction."""

    def __init__(self, path: Path) -> None:
        # FULL synchronous commits: a journal record must survive a power cut once written.
        self._db = diskcache.Cache(str(path), sqlite_synchronous=2, size_limit=2**62, eviction_policy="none")

    def close(self) -> None:
        self._db.close()

    def save_node(self, jid: str, record: dict[str, Any]) -> None:
        self._db.set(("node", jid), record)

    def drop_node(self, jid: str) -> None:
        self._db.delete(("node", jid))

    def add_delete(self, key: str) -> None:
        self._db.set(("delete", key), True)

    def drop_delete(self, key: str) -> None:
        self._db.delete(("delete", key))

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

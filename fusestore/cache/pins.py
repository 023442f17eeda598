"""Pinned paths: files kept whole in the cache, for work while the store is unreachable.

A pin names a key: a file's, or a directory's (everything below it; "" is the whole
mount). Pins live in the cache's index, so they outlast remounts. Clean data of objects
under a pin is never evicted (`ContentStore.keeps`); `Filesystem.pin` lists the tree and
fetches whatever its files lack, and a pinned file another client replaced is fetched
again in the background.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

#: Where the pins are kept in the cache's index.
INDEX_KEY = ("pins",)


class Pins:
    """The pinned keys of one cache. Inline and cheap: `covers` is one set look-up per
    level of the key."""

    def __init__(self, index: Any) -> None:
        self.index = index
        self.keys: set[str] = set(index.get(INDEX_KEY, ()))

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.keys))

    def __len__(self) -> int:
        return len(self.keys)

    def covers(self, key: str) -> bool:
        """Whether `key` is pinned, itself or by a directory above it."""
        if not self.keys:
            return False
        if "" in self.keys or key in self.keys:
            return True
        parts = key.split("/")
        return any("/".join(parts[:depth]) in self.keys for depth in range(1, len(parts)))

    def add(self, key: str) -> None:
        self.keys.add(key)
        self.index.set(INDEX_KEY, sorted(self.keys))

    def remove(self, key: str) -> bool:
        """Unpin `key`; whether it was pinned itself."""
        if key not in self.keys:
            return False
        self.keys.discard(key)
        self.index.set(INDEX_KEY, sorted(self.keys))
        return True


@dataclass
class PinProgress:
    """How far a pin has got (sent to `fusestore pin` as it goes)."""

    path: str
    files_total: int = 0
    bytes_total: int = 0
    files_done: int = 0
    bytes_done: int = 0
    #: bytes that had to come from the store (the rest was cached already)
    bytes_fetched: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PinTooBig(OSError):
    """Pinning would keep more data than the cache may hold."""

"""diskcache's Disk, with the encoding of tuple keys remembered.

diskcache pickles every key that is not a str, bytes or number and runs the pickle through
`pickletools.optimize`, which costs more than the SQLite transaction it is for (0.06 ms of
~0.25 ms per journal record here). The journal and the index key everything by small
tuples such as ("node", id), and the same few keys are written again and again (a file's
record at create, write, close and fsync), so their encodings are kept. The bytes are
exactly diskcache's own: caches written before stay readable, and lookups still match.

The encodings kept are few: an entry costs about 300 bytes, and a mount that runs for
months writes keys without end (each upload's landing token is new, so are the keys of
the files it makes): 65,536 of them grew a soak's daemon by 20 MiB. A landing's key is
written once and deleted once, so it is not kept at all.
"""

from __future__ import annotations

import functools
from typing import Any

import diskcache

#: Encodings kept, least recently used out: the keys a burst of work repeats (a file's
#: record at create, close and fsync) within a few thousand others.
KEYS_KEPT = 1024
#: Kinds of keys used once: not kept (they would push out those that repeat): a landing's
#: token, and the index's keys of objects and listings (one per object or directory ever
#: listed, each asked for once a listing: 65,536 of them took 24 MiB for nothing, and each
#: kept key pins the allocator's memory around it).
NOT_KEPT = frozenset({"landing", "meta", "listing"})


class KeyCachingDisk(diskcache.Disk):  # type: ignore[misc]  # diskcache has no type hints
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._put_tuple = functools.lru_cache(maxsize=KEYS_KEPT)(super().put)

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is tuple and key[0] not in NOT_KEPT:
            try:
                return self._put_tuple(key)  # type: ignore[no-any-return]
            except TypeError:  # an unhashable part
                pass
        return super().put(key)  # type: ignore[no-any-return]

"""diskcache's Disk, with the encoding of tuple keys remembered.

diskcache pickles every key that is not a str, bytes or number and runs the pickle through
`pickletools.optimize`, which costs more than the SQLite transaction it is for (0.06 ms of
~0.25 ms per journal record here). The journal and the index key everything by small
tuples such as ("node", id), and the same few keys are written again and again (a file's
record at create, write, close and fsync), so their encodings are kept. A tuple of a few
short strings, the common key, is encoded directly instead (`short_str_tuple`). The bytes
are exactly diskcache's own: caches written before stay readable, and lookups still match.

The encodings kept are few: an entry costs about 300 bytes, and a mount that runs for
months writes keys without end (each upload's landing token is new, so are the keys of
the files it makes): 65,536 of them grew a soak's daemon by 20 MiB. A landing's key is
written once and deleted once, so it is not kept at all.
"""

from __future__ import annotations

import functools
import sqlite3
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

_TUPLE_OF = (b"\x85", b"\x86", b"\x87")  # TUPLE1, TUPLE2, TUPLE3


def short_str_tuple(key: tuple[Any, ...]) -> bytes | None:
    """diskcache's encoding of a tuple of one to three strings of up to 255 bytes each
    (`pickle.dumps` with protocol 5, then `pickletools.optimize`), made directly: ten
    times faster, and nothing to keep (the metadata index asks for one key per listed
    object). None for any other key."""
    if not 1 <= len(key) <= 3:
        return None
    parts = []
    for item in key:
        if type(item) is not str:
            return None
        data = item.encode("utf-8", "surrogatepass")
        if len(data) > 255:
            return None
        parts.append(b"\x8c" + bytes((len(data),)) + data)  # SHORT_BINUNICODE
    body = b"".join(parts) + _TUPLE_OF[len(key) - 1] + b"."  # STOP
    return b"\x80\x05\x95" + len(body).to_bytes(8, "little") + body  # PROTO 5, FRAME


class KeyCachingDisk(diskcache.Disk):  # type: ignore[misc]  # diskcache has no type hints
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._put_tuple = functools.lru_cache(maxsize=KEYS_KEPT)(super().put)

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is tuple and self.pickle_protocol == 5:
            encoded = short_str_tuple(key)
            if encoded is not None:
                return sqlite3.Binary(encoded), False
        if type(key) is tuple and key:
            try:
                if key[0] not in NOT_KEPT:
                    return self._put_tuple(key)  # type: ignore[no-any-return]
            except TypeError:  # an unhashable part
                pass
        return super().put(key)  # type: ignore[no-any-return]

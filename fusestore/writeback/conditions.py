"""Whether the store honours conditional writes: learnt once per mount, before its first
conditioned upload.

Every upload is conditioned on the version its change was based on (If-Match its etag,
If-None-Match for a new file): that is what keeps two writers from overwriting each other.
AWS S3, MinIO, Ceph RGW and SeaweedFS honour both; a server that ignores them would let the
last writer win without a word. A mount therefore checks once, with an empty object of its
own, and where the conditions are ignored the flusher reads the key's etag (a HEAD) just
before each upload instead: a narrower check, since a write landing between the two is
still replaced.
"""

from __future__ import annotations

import uuid

from ..stores import AlreadyExists, PreconditionFailed, Store

#: Names of the probe objects, at the top of the store; listings never show them.
PROBE_PREFIX = ".fusestore-probe-"


def probe_key(host: str) -> str:
    """A new probe object's key: the caller journals its delete before the probe, so that
    a daemon killed in the middle of it leaves nothing for good (the next mount deletes it)."""
    return f"{PROBE_PREFIX}{host}-{uuid.uuid4().hex[:12]}"


def probe_conditions(store: Store, key: str) -> bool:
    """Whether `store` refuses a create-only write over an object and a write conditioned
    on an etag the object does not have. Blocking: three small PUTs (an S3 store adds a
    HEAD to tell a failed If-Match from a missing object) and one delete of the probe
    object at `key`, which is gone again when this returns (unless the delete raised)."""
    store.put(key, b"", if_none_match=True)
    try:
        try:
            store.put(key, b"", if_none_match=True)
        except AlreadyExists:
            pass
        else:
            return False
        try:
            store.put(key, b"", if_match='"' + "0" * 32 + '"')
        except PreconditionFailed:
            return True
        return False
    finally:
        store.delete_many([key])

"""moto's S3 server with one fix for concurrent use: a key's ETag is computed under the
key's lock.

moto (5.2) computes an ETag lazily by seeking and reading the key's buffer without the lock
its readers take; a listing or GET that arrives while the PUT handler computes the ETag for
its own answer interleaves the reads, and a wrong ETag is answered and cached. The bench's
watcher lists (and GETs) while the systems upload, so without this fix a peer that checks
the ETag of what it uploaded (rclone) sees "corrupted on transfer" and deletes its object.

    python bench/moto_server.py -H 127.0.0.1 -p PORT
"""

from __future__ import annotations

from typing import Any

from moto.s3 import models
from moto.server import main

_unlocked_etag = models.FakeKey.etag


def _etag(self: Any) -> str:
    with self.lock:
        return _unlocked_etag.fget(self)  # type: ignore[no-any-return]


models.FakeKey.etag = property(_etag)  # type: ignore[assignment,method-assign]

if __name__ == "__main__":
    main()

"""moto's S3 server (`python -m fusestore.testing.motoserver`, moto's own options), with
one of its races closed, so that under concurrent requests it gives S3's etags.

moto computes an object's etag on first use, by reading the object's shared buffer from
its start, without the object's lock. An object over 16 MiB (kept on disk) that a listing
or a HEAD reads while its PUT's answer is made gets a wrong etag, given in that answer or
kept for good: the next request conditioned on the right one fails. Seen as false
conflict copies in crash tests (the PUT answered one etag, every later HEAD another); 23
of 25 PUTs of 40 MiB came out wrong with three threads listing meanwhile. Here the etag
is computed under the object's lock.
"""

from __future__ import annotations

from moto import server
from moto.s3 import models


def _etag_under_the_objects_lock() -> None:
    found: property = vars(models.FakeKey)["etag"]
    computed = found.fget
    assert computed is not None

    def etag(self: models.FakeKey) -> str:
        with self.lock:
            return computed(self)  # type: ignore[no-any-return]

    models.FakeKey.etag = property(etag)  # type: ignore[method-assign,assignment]


def main() -> None:
    _etag_under_the_objects_lock()
    server.main()


if __name__ == "__main__":
    main()

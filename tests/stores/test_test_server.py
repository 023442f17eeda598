"""The moto server the tests run on gives S3's etags under concurrent requests (see
`fusestore.testing.motoserver`): a false conflict copy in a test must be fusestore's."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterator

import pytest
from botocore.exceptions import ClientError

from fusestore.testing.s3server import LocalS3Server

MiB = 2**20
#: Over moto's 16 MiB in-memory buffer: such an object is read from disk, in chunks.
BIG = 24 * MiB


@pytest.fixture
def listing(s3_server: LocalS3Server, make_bucket: Callable[[], str]) -> Iterator[str]:
    """A bucket that three threads list and HEAD without a pause while the test runs."""
    bucket = make_bucket()
    stop = threading.Event()

    def list_and_head() -> None:
        client = s3_server.client()
        while not stop.is_set():
            client.list_objects_v2(Bucket=bucket)
            with contextlib.suppress(ClientError):  # not there yet
                client.head_object(Bucket=bucket, Key="k")

    threads = [threading.Thread(target=list_and_head, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        yield bucket
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


@pytest.mark.timeout(120)
def test_etags_are_the_md5_of_the_bytes_while_others_list(s3_server: LocalS3Server, listing: str) -> None:
    client = s3_server.client()
    wrong = []
    for attempt in range(6):
        body = os.urandom(BIG)
        md5 = f'"{hashlib.md5(body).hexdigest()}"'
        answered = client.put_object(Bucket=listing, Key="k", Body=body)["ETag"]
        held = client.head_object(Bucket=listing, Key="k")["ETag"]
        if (answered, held) != (md5, md5):
            wrong.append(f"PUT {attempt}: {md5} answered {answered}, then {held}")
    assert not wrong, "\n".join(wrong)

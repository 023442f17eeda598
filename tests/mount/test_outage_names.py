"""A name is never reported absent because the store could not be asked.

Each test runs the real daemon on a real FUSE mount against a moto server of its own,
which it stops to make an outage.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from fusestore.testing.s3server import LocalS3Server

from .conftest import Mount

IO_TIMEOUT = 6.0


def _errno_of(call: object) -> int | None:
    try:
        call()  # type: ignore[operator]
    except OSError as exc:
        return exc.errno
    return None


@pytest.mark.timeout(180)
def test_lookups_during_an_outage_never_say_a_name_is_absent(
    own_server: LocalS3Server, tmp_path: Path
) -> None:
    own_server.create_bucket("names")
    client = own_server.client()
    for i in range(3):
        client.put_object(Bucket="names", Key=f"f/n{i}", Body=b"n")
        client.put_object(Bucket="names", Key=f"pre/u{i}", Body=b"u" * 100)
    mount = Mount(
        own_server, "names", tmp_path / "mnt", tmp_path / "mnt-cache", ["--io-timeout", str(IO_TIMEOUT)]
    )
    try:
        mount.start()
        assert sorted(os.listdir(mount.path)) == ["f", "pre"]
        own_server.stop()
        started = time.monotonic()
        # Requests in the same directories at once (one of them lists it, the others wait
        # for that listing) and in another one: each waits for the store and fails with
        # EIO; none is told that a name which exists is absent.
        calls = {
            "stat f/n1": lambda: os.stat(mount.path / "f" / "n1"),
            "ls pre": lambda: os.listdir(mount.path / "pre"),
            "cat pre/u1": lambda: (mount.path / "pre" / "u1").read_bytes(),
            "stat pre/u2": lambda: os.stat(mount.path / "pre" / "u2"),
            "ls f": lambda: os.listdir(mount.path / "f"),
        }
        outcomes: dict[str, int | None] = {}
        threads = []
        for name, call in calls.items():
            thread = threading.Thread(target=lambda n=name, c=call: outcomes.update({n: _errno_of(c)}))
            thread.start()
            threads.append(thread)
            time.sleep(0.3)
        for thread in threads:
            thread.join(IO_TIMEOUT * 4)
        assert outcomes == dict.fromkeys(calls, errno.EIO), mount.log_text()
        assert time.monotonic() - started < IO_TIMEOUT * 3
        # The directories themselves were listed in the root: they still show.
        assert os.path.isdir(mount.path / "pre") and os.path.isdir(mount.path / "f")
    finally:
        mount.kill()


@pytest.mark.timeout(180)
def test_an_outage_fails_creates_only_where_names_are_unknown(
    own_server: LocalS3Server, tmp_path: Path
) -> None:
    own_server.create_bucket("names")
    client = own_server.client()
    client.put_object(Bucket="names", Key="d/old", Body=b"old")
    mount = Mount(
        own_server,
        "names",
        tmp_path / "mnt",
        tmp_path / "mnt-cache",
        ["--io-timeout", str(IO_TIMEOUT), "--writeback-delay", "0.5"],
    )
    try:
        mount.start()
        assert os.listdir(mount.path) == ["d"]
        (mount.path / "listed").mkdir()
        own_server.stop()
        # In a directory never listed the name cannot be checked (it may hold a file of
        # that name): the create waits for the store and fails with EIO, never a guess.
        started = time.monotonic()
        assert _errno_of(lambda: (mount.path / "d" / "new").write_bytes(b"x")) == errno.EIO
        assert time.monotonic() - started < IO_TIMEOUT * 2
        # In a directory whose names are known, writes are accepted during the outage.
        (mount.path / "listed" / "new").write_bytes(b"made while the store was down")
        assert (mount.path / "listed" / "new").read_bytes() == b"made while the store was down"
        own_server.start()
        own_server.create_bucket("names")  # moto keeps nothing across a restart
        mount.wait_for_key("listed/new", timeout=60)
        assert mount.get("listed/new") == b"made while the store was down"
        assert mount.umount() == 0, mount.log_text()
    finally:
        mount.kill()

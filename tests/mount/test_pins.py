"""`fusestore pin`: a 200-file folder fetched with progress shown, then read back whole with
the store stopped; a pin bigger than the cache refused up front."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fusestore.testing.s3server import LocalS3Server

from .conftest import Mount, fusestore_cli, status_of


@pytest.mark.timeout(180)
def test_a_pinned_folder_reads_back_whole_with_the_store_stopped(
    own_server: LocalS3Server, tmp_path: Path
) -> None:
    own_server.create_bucket("pins")
    client = own_server.client()
    files = {
        f"project/{'src' if i % 2 else 'data'}/file{i:03}.bin": os.urandom(2000 + 97 * i) for i in range(200)
    }
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(lambda item: client.put_object(Bucket="pins", Key=item[0], Body=item[1]), files.items())
        )
    client.put_object(Bucket="pins", Key="outside.txt", Body=b"not pinned")
    mount = Mount(own_server, "pins", tmp_path / "mnt", tmp_path / "mnt-cache", ["--io-timeout", "3"])
    try:
        mount.start()
        done = fusestore_cli("pin", str(mount.path / "project"))
        assert done.returncode == 0, done.stderr + mount.log_text()
        total = sum(map(len, files.values()))
        assert "pinning /project: " in done.stderr, "progress is shown while it runs"
        assert "200/200 files" in done.stderr
        assert f"pinned /project: 200 file(s), {total / 2**20:.1f} MiB" in done.stdout, done.stdout
        status = status_of(mount)
        assert status["pinned"] == ["/project"] and status["pinned_bytes"] == total
        shown = fusestore_cli("status", str(mount.path)).stdout
        assert "pinned:" in shown and "/project" in shown

        own_server.stop()
        for key, data in files.items():
            got = (mount.path / key).read_bytes()
            assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), key
        with pytest.raises(OSError):
            (mount.path / "outside.txt").read_bytes()  # never read, not pinned: the store is needed
        own_server.start()
        own_server.create_bucket("pins")  # moto keeps nothing across a restart
        unpinned = fusestore_cli("unpin", str(mount.path / "project"))
        assert unpinned.returncode == 0 and "unpinned /project" in unpinned.stdout, unpinned.stderr
        assert status_of(mount)["pinned"] == []
    finally:
        mount.kill()


@pytest.mark.timeout(120)
def test_a_pin_bigger_than_the_cache_is_refused_up_front(own_server: LocalS3Server, tmp_path: Path) -> None:
    own_server.create_bucket("small")
    client = own_server.client()
    for i in range(3):
        client.put_object(Bucket="small", Key=f"big/{i}", Body=os.urandom(2**20))
    mount = Mount(own_server, "small", tmp_path / "mnt", tmp_path / "mnt-cache", ["--cache-size", "2M"])
    try:
        mount.start()
        before = status_of(mount)["requests"]
        refused = fusestore_cli("pin", str(mount.path / "big"))
        assert refused.returncode == 2
        assert refused.stderr.strip().endswith(
            "cannot pin /big: it holds 3.0 MiB, and with the 0.0 MiB pinned already that is more than "
            "the cache's 2.0 MiB (--cache-size); raise --cache-size or pin less"
        ), refused.stderr
        requests = status_of(mount)["requests"]
        assert requests.get("GetObject", 0) == before.get("GetObject", 0), "nothing was fetched"
        assert status_of(mount)["pinned"] == []
        missing = fusestore_cli("pin", str(tmp_path))
        assert missing.returncode == 2 and "is not on a fusestore mount" in missing.stderr
        assert mount.umount() == 0, mount.log_text()
    finally:
        mount.kill()

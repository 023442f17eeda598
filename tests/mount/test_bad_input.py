"""Bad input to `fusestore mount`: one line naming the problem and the fix, exit code 2,
and nothing left behind (no mount, no process)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusestore.mounts import is_mounted
from fusestore.testing.s3server import LocalS3Server, free_port


@pytest.fixture(scope="module")
def auth_server() -> Iterator[LocalS3Server]:
    """A server that knows none of our credentials."""
    with LocalS3Server() as server:
        server.create_bucket("locked")
        server.require_auth()
        yield server


def mount(url: str, mountpoint: Path, *options: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "fusestore", "mount", url, str(mountpoint), *options],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert not is_mounted(mountpoint), "a failed mount left a mount behind"
    return done


def assert_one_line(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.timeout(120)
def test_store_problems(s3_server: LocalS3Server, auth_server: LocalS3Server, tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()
    cache = ["--cache-dir", str(tmp_path / "cache")]
    endpoint = ["--endpoint-url", s3_server.endpoint_url]
    assert_one_line(mount("s3://no-such-bucket", target, *endpoint, *cache), "does not exist", "create it")
    assert_one_line(
        mount("s3://locked", target, "--endpoint-url", auth_server.endpoint_url, *cache), "refused", "locked"
    )
    down = f"http://127.0.0.1:{free_port()}"
    assert_one_line(mount("s3://any", target, "--endpoint-url", down, *cache), "cannot reach", "check")
    assert_one_line(mount("ftp://host/x", target, *cache), "ftp")
    assert_one_line(mount("s3://", target, *endpoint, *cache), "bucket")
    assert_one_line(mount("not a url", target, *endpoint, *cache))


@pytest.mark.timeout(60)
def test_a_cache_directory_of_another_user_is_refused(
    s3_server: LocalS3Server, make_bucket: object, tmp_path: Path
) -> None:
    bucket = make_bucket()  # type: ignore[operator]
    target = tmp_path / "mnt"
    target.mkdir()
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    os.chown(cache, 12345, 12345)
    done = mount(
        f"s3://{bucket}", target, "--endpoint-url", s3_server.endpoint_url, "--cache-dir", str(cache)
    )
    assert_one_line(done, "cache", str(cache))

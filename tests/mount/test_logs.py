"""The daemon's log as an operator reads it: `--log-file` (timed lines, a new file after
logrotate moves the old one, kept in the background), and at `--log-level debug` one line
per request to the store, with no secret in any line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from fusestore.service.mounts import is_mounted, lazy_unmount
from fusestore.testing.s3server import CREDENTIALS, S3ServerProcess

from .conftest import Mount, fusestore_cli, sh

#: 2026-12-07T01:10:35.123+00:00 LEVEL logger: message
TIMED = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: "
)
#: one line per request to the store
REQUEST = re.compile(
    r"store request: op=(?P<op>\w+) key=(?P<key>'.*'|-) status=(?P<status>\S+) "
    r"bytes=(?P<bytes>\d+) ms=(?P<ms>\d+\.\d) attempt=(?P<attempt>\d+)$"
)
SECRETS = (*CREDENTIALS.values(), "Authorization", "Signature", "Credential=", "x-amz-security-token")


def http_method(operation: str) -> str:
    """The HTTP method of an S3 API operation (from botocore's model of the service)."""
    model = boto3.client("s3", region_name="us-east-1").meta.service_model
    method: str = model.operation_model(operation).http["method"]
    return method


def served(server: S3ServerProcess, bucket: str, offset: int) -> Counter[str]:
    """The requests for `bucket` the server logged after `offset`, by HTTP method."""
    time.sleep(0.5)  # the server logs a request once it has answered
    found: Counter[str] = Counter()
    plain = re.sub(r"\x1b\[[0-9;]*m", "", server.log_since(offset))  # werkzeug colours some lines
    for match in re.finditer(r'"([A-Z]+) /([^/? ]+)[/? ]', plain):
        if match.group(2) == bucket:
            found[match.group(1)] += 1
    return found


@pytest.mark.timeout(180)
def test_a_debug_log_file_has_a_timed_line_per_store_request_and_no_secret(
    mount_factory: Callable[..., Mount], server: S3ServerProcess, tmp_path: Path
) -> None:
    log_file = tmp_path / "fusestore.log"
    mount = mount_factory("--log-file", str(log_file), run=False)
    mount.client.put_object(Bucket=mount.bucket, Key="theirs.txt", Body=b"written by another client")
    mount.log_level = "debug"
    offset = server.log_size()
    try:
        mount.start()
        sh("mkdir d && echo hello > d/a && cp d/a d/b && ls -la d && cat d/a d/b theirs.txt", mount.path)
        assert mount.umount() == 0, mount.log_text()
    finally:
        mount.kill()
    by_method = served(server, mount.bucket, offset)

    text = log_file.read_text()
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in the log"
    lines = text.splitlines()
    untimed = [line for line in lines if not TIMED.match(line)]
    assert not untimed, untimed[:5]
    assert not [line for line in lines if line.rstrip().endswith("store call:") or "store call: call" in line]

    requests = [m for m in (REQUEST.search(line) for line in lines) if m is not None]
    logged = Counter(http_method(m["op"]) for m in requests)
    assert logged == by_method, "the log {}, the server {}:\n{}".format(
        dict(logged), dict(by_method), "\n".join(m.group(0) for m in requests)
    )
    ops = {m["op"] for m in requests}
    assert {"PutObject", "ListObjectsV2", "GetObject", "HeadObject"} <= ops, ops
    put = next(m for m in requests if m["op"] == "PutObject" and m["key"] == "'d/a'")
    assert (put["status"], put["bytes"], put["attempt"]) == ("200", "6", "1")
    get = next(m for m in requests if m["op"] == "GetObject" and m["key"] == "'theirs.txt'")
    assert get["status"] in ("200", "206") and int(get["bytes"]) >= len(b"written by another client")
    assert all(float(m["ms"]) >= 0 for m in requests)


@pytest.mark.timeout(180)
def test_a_log_file_moved_away_by_logrotate_is_followed_by_a_new_one(
    mount_factory: Callable[..., Mount], tmp_path: Path
) -> None:
    log_file = tmp_path / "fusestore.log"
    mount = mount_factory("--log-file", str(log_file), run=False)
    mount.log_level = "debug"
    mount.start()
    sh("echo one > one", mount.path)
    mount.wait_for_key("one")
    rotated = log_file.with_name("fusestore.log.1")
    log_file.rename(rotated)  # what logrotate does (without copytruncate)
    before = rotated.read_text()
    sh("echo two > two && ls -l", mount.path)
    mount.wait_for_key("two")
    assert mount.umount() == 0, mount.log_text()
    assert log_file.exists(), "no new file after the old one was moved away"
    after = log_file.read_text()
    assert "'two'" in after and "'two'" not in before
    assert rotated.read_text() == before, "a line went to the file moved away"
    assert all(TIMED.match(line) for line in after.splitlines())


@pytest.mark.timeout(120)
def test_sighup_opens_the_log_file_anew_and_the_mount_goes_on(
    mount_factory: Callable[..., Mount], tmp_path: Path
) -> None:
    log_file = tmp_path / "fusestore.log"
    mount = mount_factory("--log-file", str(log_file), run=False)
    mount.log_level = "debug"
    mount.start()
    assert mount.process is not None
    log_file.rename(log_file.with_name("fusestore.log.1"))
    mount.process.send_signal(signal.SIGHUP)  # logrotate's postrotate
    deadline = time.monotonic() + 20
    while not (log_file.exists() and "SIGHUP" in log_file.read_text()):
        assert time.monotonic() < deadline, "no new log file after SIGHUP"
        assert mount.process.poll() is None, mount.log_text()
        time.sleep(0.1)
    sh("echo still > here && cat here", mount.path)
    assert mount.umount() == 0, mount.log_text()
    assert "op=PutObject key='here'" in log_file.read_text()


@pytest.mark.timeout(120)
def test_a_background_mount_keeps_logging_to_its_file(
    server: S3ServerProcess, make_bucket: Callable[[], str], tmp_path: Path
) -> None:
    bucket, path, log_file = make_bucket(), tmp_path / "mnt", tmp_path / "bg.log"
    path.mkdir()
    done = fusestore_cli(
        "--log-level", "debug", "mount", "--background", f"s3://{bucket}", str(path),
        "--endpoint-url", server.endpoint_url, "--cache-dir", str(tmp_path / "cache"),
        "--log-file", str(log_file),
    )  # fmt: skip
    try:
        assert done.returncode == 0, done.stderr
        written_at_ready = log_file.stat().st_size
        (path / "late").write_bytes(b"after the mount detached")
        assert fusestore_cli("umount", str(path)).returncode == 0
        later = log_file.read_bytes()[written_at_ready:].decode()
        assert "op=PutObject key='late'" in later, later[-2000:]
    finally:
        if is_mounted(path):
            lazy_unmount(path)


@pytest.mark.timeout(60)
def test_a_log_file_that_cannot_be_written_is_one_error_and_nothing_mounted(tmp_path: Path) -> None:
    for bad in (tmp_path / "no-such-dir" / "f.log", tmp_path):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "fusestore",
                "mount",
                "s3://some-bucket",
                str(tmp_path),
                "--log-file",
                str(bad),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("fusestore: error:") and "--log-file" in line and str(bad) in line, line
        assert not is_mounted(tmp_path)
    assert not os.path.exists(tmp_path / "no-such-dir")


@pytest.mark.timeout(120)
def test_the_python_apis_log_file_is_the_daemons_log_file(
    server: S3ServerProcess, make_bucket: Callable[[], str], tmp_path: Path
) -> None:
    import fusestore
    from fusestore.api import MountError

    bucket, point, log_file = make_bucket(), tmp_path / "mnt", tmp_path / "api.log"
    point.mkdir()
    options = {
        "endpoint_url": server.endpoint_url,
        "cache_dir": str(tmp_path / "cache"),
        "log_level": "debug",
    }
    try:
        with fusestore.mount(f"s3://{bucket}", point, log_file=str(log_file), **options) as m:
            (m.path / "via-api").write_bytes(b"x")
        text = log_file.read_text()
        assert "op=PutObject key='via-api' status=200" in text, text[-2000:]
        assert all(TIMED.match(line) for line in text.splitlines())
        with pytest.raises(MountError, match=r"--log-file .*no-such-dir"):
            fusestore.mount(
                f"s3://{bucket}", point, log_file=str(tmp_path / "no-such-dir" / "f.log"), **options
            )
        assert not is_mounted(point)
    finally:
        if is_mounted(point):
            lazy_unmount(point)

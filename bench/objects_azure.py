"""The bench's own Azure Blob Storage client (azure-storage-blob), the `Objects` of an
Azure account: Azurite's in the bench."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import BinaryIO

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from objects import Listing, MiB, Objects

#: Blob Batch takes at most this many sub-requests.
BATCH = 256


class AzureObjects(Objects):
    """Shared-key access to the account behind `endpoint` (the blob service URL).

    `put` is one Put Blob (up to 512 MiB in one request); the managed uploads stage 8 MiB
    blocks, 10 at a time, and commit them, as boto3's multipart upload sends 8 MiB parts
    from 10 threads; `read` streams 8 MiB ranges in order."""

    sdk = "azure-storage-blob"
    words = {
        "upload": "azure-storage-blob upload_blob (8 MiB blocks, 10 threads)",
        "put": "azure-storage-blob Put Blob",
        "put8": "azure-storage-blob Put Blob, 8 threads",
        "get": "azure-storage-blob download_blob (8 MiB ranges)",
        "list": "azure-storage-blob List Blobs (all pages)",
        "head": "azure-storage-blob Get Blob Properties one by one",
        "move": "azure-storage-blob Copy Blob each + Blob Batch delete",
        "delete": "azure-storage-blob Blob Batch delete",
        "result": "azure-storage-blob Put Blob of the result",
        "stream": "azure-storage-blob upload_blob (8 MiB blocks, 10 threads)",
    }

    def __init__(self, endpoint: str, account: str, key: str) -> None:
        credential = {"account_name": account, "account_key": key}
        common = {"connection_data_block_size": MiB, "retry_total": 3}
        # Reads: ranged GETs of 8 MiB one after the other (the SDK's 4 MiB default ran at a
        # third of the speed on Azurite), as close to one streamed GET as it comes.
        self.plain = BlobServiceClient(
            endpoint,
            credential=credential,
            max_single_put_size=512 * MiB,
            max_single_get_size=8 * MiB,
            max_chunk_get_size=8 * MiB,
            **common,
        )
        self.managed = BlobServiceClient(
            endpoint, credential=credential, max_single_put_size=8 * MiB, max_block_size=8 * MiB, **common
        )

    def create_bucket(self, bucket: str) -> None:
        self.plain.create_container(bucket)

    def delete_bucket(self, bucket: str) -> None:
        # Deleting a container deletes its blobs, committed or not.
        self.plain.delete_container(bucket)

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.plain.get_blob_client(bucket, key).upload_blob(body, overwrite=True)

    def upload_file(self, bucket: str, key: str, path: str) -> None:
        with open(path, "rb") as f:
            self.managed.get_blob_client(bucket, key).upload_blob(f, overwrite=True, max_concurrency=10)

    def upload_stream(self, bucket: str, key: str, stream: BinaryIO, size: int) -> None:
        blob = self.managed.get_blob_client(bucket, key)
        blob.upload_blob(stream, length=size, overwrite=True, max_concurrency=10)

    def read(self, bucket: str, key: str, consume: Callable[[bytes], object], *, own: bool = False) -> int:
        got = 0
        for chunk in self.plain.get_blob_client(bucket, key).download_blob().chunks():
            consume(chunk)
            got += len(chunk)
        return got

    def head(self, bucket: str, key: str) -> int:
        return int(self.plain.get_blob_client(bucket, key).get_blob_properties().size)

    def list(self, bucket: str, prefix: str, page: int = 1000) -> Listing:
        container = self.plain.get_container_client(bucket)
        blobs = container.list_blobs(name_starts_with=prefix or None, results_per_page=page)
        return {b.name: (int(b.size), str(b.etag)) for b in blobs}

    def copy(self, bucket: str, source: str, dest: str) -> None:
        url = self.plain.get_blob_client(bucket, source).url
        blob = self.plain.get_blob_client(bucket, dest)
        status = blob.start_copy_from_url(url).get("copy_status")
        # Within one account the copy is usually done on return; else wait for it.
        while status == "pending":
            status = blob.get_blob_properties().copy.status
        if status != "success":
            raise RuntimeError(f"copy of {source} to {dest}: {status}")

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        container = self.plain.get_container_client(bucket)
        for i in range(0, len(keys), BATCH):
            with contextlib.suppress(ResourceNotFoundError):  # every one absent already
                container.delete_blobs(*keys[i : i + BATCH], raise_on_any_failure=False)

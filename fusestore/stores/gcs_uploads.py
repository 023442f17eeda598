"""The multipart contract on GCS: temporary objects composed at completion.

GCS's resumable uploads are sequential, single-session streams; the contract wants parts
sent in parallel, in any order, and after a restart too. So each upload is objects in a
reserved folder inside the store's root:

    <root>.fusestore-uploads/<upload id>            the manifest: an empty object whose
                                                    metadata holds the key (`upload-key`)
                                                    and the destination's metadata (`m.NAME`)
    <root>.fusestore-uploads/<upload id>/<nnnnn>    part nnnnn, as sent
    <root>.fusestore-uploads/<upload id>/c<l>-<i>   an intermediate composite (level l)

`complete` composes the parts (32 sources per compose request, intermediates first where
there are more), the destination's metadata and the write condition on the final compose
alone, then deletes the folder; `abort` deletes it; `pending` lists the manifests (one
listing: they carry their metadata). The name `.fusestore-uploads` is reserved at every
depth: keys never name it and listings never show it.

`put_file` uses this too, rather than one resumable upload: parts in parallel were about
twice as fast (128 MiB to the emulator: 3.1 s against 6.0 s), and nothing appears at the
key until the caller's last check passed.

Every method blocks on HTTP requests.
"""

from __future__ import annotations

import builtins
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, Protocol

from .base import Body, CompletedPart, PendingUpload, read_body
from .errors import NotFound, PreconditionFailed, StoreError
from .keys import KeySpace, check_metadata

log = logging.getLogger(__name__)

RESERVED = ".fusestore-uploads"
#: Sources one compose request takes (the JSON API's limit).
COMPOSE_LIMIT = 32
#: Parts per upload: part names have five digits.
MAX_PARTS = 10_000
_KEY = "upload-key"
_META = "m."
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_CONTENT_TYPE = "application/octet-stream"


class UploadHost(Protocol):
    """What the uploads need of their store (`gcs.GCSStore`)."""

    keys: KeySpace
    bucket_name: str

    @property
    def bucket(self) -> Any: ...
    @property
    def client(self) -> Any: ...
    def full(self, key: str) -> str: ...
    def _writable(self) -> None: ...
    def count(self, operation: str, n: int = 1) -> None: ...
    def call_options(self) -> dict[str, Any]: ...
    def errors(self, key: str | None, **how: Any) -> AbstractContextManager[None]: ...
    def condition(
        self, key: str, if_match: str | None, if_none_match: bool
    ) -> tuple[str | None, int | None]: ...
    def changed_or_gone(self, key: str, exc: StoreError) -> StoreError: ...
    def delete_names(self, names: list[str]) -> None: ...


class UploadArea:
    """The uploads of one store. Thread-safe: what it remembers (the uploads it knows to
    exist, so that a part need not look its manifest up) is a dict under the GIL."""

    def __init__(self, store: UploadHost) -> None:
        self.store = store
        #: upload id -> its key, for the uploads known to exist
        self._known: dict[str, str] = {}

    @property
    def folder(self) -> str:
        return f"{self.store.keys.prefix}{RESERVED}/"

    def _manifest_name(self, upload_id: str) -> str:
        return f"{self.folder}{upload_id}"

    def _part_name(self, upload_id: str, number: int) -> str:
        return f"{self.folder}{upload_id}/{number:05d}"

    def start(self, key: str, metadata: Mapping[str, str] | None) -> str:
        store = self.store
        store.full(key)
        meta = check_metadata(dict(metadata or {}))
        store._writable()
        upload_id = uuid.uuid4().hex
        manifest = store.bucket.blob(self._manifest_name(upload_id))
        manifest.metadata = {_KEY: key, **{_META + name: value for name, value in meta.items()}}
        store.count("objects.insert")
        with store.errors(key, condition="none-match", bucket_404=True, target=key):
            manifest.upload_from_string(
                b"", content_type=_CONTENT_TYPE, if_generation_match=0, **store.call_options()
            )
        self._known[upload_id] = key
        return upload_id

    def _manifest(self, key: str, upload_id: str) -> Any:
        """The manifest of `upload_id` for `key`; NotFound when there is none."""
        if _UPLOAD_ID.match(upload_id):
            self.store.count("objects.get")
            with self.store.errors(key):
                blob = self.store.bucket.get_blob(self._manifest_name(upload_id), **self.store.call_options())
            if blob is not None and (blob.metadata or {}).get(_KEY) == key:
                return blob
        raise NotFound(f"no such upload of {key!r}: {upload_id!r}", key=key)

    def put_part(self, key: str, upload_id: str, number: int, body: Body) -> CompletedPart:
        store = self.store
        store.full(key)
        store._writable()
        if not 1 <= number <= MAX_PARTS:
            raise ValueError(f"part numbers run from 1 to {MAX_PARTS}, not {number}")
        if self._known.get(upload_id) != key:
            self._manifest(key, upload_id)
            self._known[upload_id] = key
        part = store.bucket.blob(self._part_name(upload_id, number))
        store.count("objects.insert")
        with store.errors(key, bucket_404=True):
            part.upload_from_string(read_body(body), content_type=_CONTENT_TYPE, **store.call_options())
        return CompletedPart(number, str(part.generation))

    def complete(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[CompletedPart],
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        store = self.store
        full = store.full(key)
        store._writable()
        manifest = self._manifest(key, upload_id)
        condition, generation = store.condition(key, if_match, if_none_match)
        ordered = sorted(parts, key=lambda p: p.number)
        numbers = [p.number for p in ordered]
        if not ordered or len(set(numbers)) != len(numbers):
            raise StoreError(f"an upload completes with distinct parts, not {numbers}", key=key)
        try:
            sources = [(self._part_name(upload_id, p.number), int(p.etag)) for p in ordered]
        except ValueError:
            raise StoreError(f"not the parts of a gs:// upload: {numbers}", key=key) from None
        sources = self._compose_down(key, upload_id, sources)
        target = store.bucket.blob(full)
        meta = manifest.metadata or {}
        target.metadata = {name[len(_META) :]: v for name, v in meta.items() if name.startswith(_META)}
        target.content_type = _CONTENT_TYPE
        try:
            self._compose(key, target, sources, generation, condition)
        except PreconditionFailed as exc:
            raise store.changed_or_gone(key, exc) from None
        self._known.pop(upload_id, None)
        try:
            self._remove(upload_id)
        except StoreError as exc:  # the object is whole; only temporaries stay behind
            log.warning("upload %s of %r is complete, but its parts stay: %s", upload_id, key, exc)
        return str(target.generation)

    def _compose(
        self,
        key: str,
        target: Any,
        sources: list[tuple[str, int]],
        generation: int | None = None,
        condition: str | None = None,
    ) -> None:
        store = self.store
        blobs = [store.bucket.blob(name, generation=gen) for name, gen in sources]
        store.count("objects.compose")
        with store.errors(key, condition=condition):
            target.compose(
                blobs,
                if_generation_match=generation,
                if_source_generation_match=[gen for _, gen in sources],
                **store.call_options(),
            )

    def _compose_down(
        self, key: str, upload_id: str, sources: list[tuple[str, int]]
    ) -> list[tuple[str, int]]:
        """Intermediate composites of `sources`, level by level, until one compose takes them."""
        level = 0
        while len(sources) > COMPOSE_LIMIT:
            groups = [sources[i : i + COMPOSE_LIMIT] for i in range(0, len(sources), COMPOSE_LIMIT)]

            def compose(numbered: tuple[int, list[tuple[str, int]]], level: int = level) -> tuple[str, int]:
                index, group = numbered
                if len(group) == 1:
                    return group[0]
                name = f"{self.folder}{upload_id}/c{level}-{index:05d}"
                target = self.store.bucket.blob(name)
                target.content_type = _CONTENT_TYPE
                self._compose(key, target, group)
                return name, int(target.generation)

            with ThreadPoolExecutor(max_workers=min(8, len(groups))) as pool:
                sources = list(pool.map(compose, enumerate(groups)))
            level += 1
        return sources

    def abort(self, key: str, upload_id: str) -> None:
        self.store.full(key)
        self.store._writable()
        self._known.pop(upload_id, None)
        if _UPLOAD_ID.match(upload_id):
            self._remove(upload_id)

    def _remove(self, upload_id: str) -> None:
        """Delete the manifest (the upload is gone from `pending` from then on), then its
        parts and intermediates."""
        store = self.store
        store.delete_names([self._manifest_name(upload_id)])
        names = [blob.name for blob in self._walk(f"{self.folder}{upload_id}/", None)]
        if names:
            store.delete_names(names)

    def _walk(self, prefix: str, delimiter: str | None) -> builtins.list[Any]:
        store = self.store
        found: list[Any] = []
        token = None
        while True:
            store.count("objects.list")
            with store.errors(None, bucket_404=True):
                listing = store.client.list_blobs(
                    store.bucket_name,
                    prefix=prefix,
                    delimiter=delimiter,
                    page_token=token,
                    max_results=1000,
                    **store.call_options(),
                )
                found += list(next(listing.pages))
                token = listing.next_page_token
            if token is None:
                return found

    def pending(self, prefix: str) -> builtins.list[PendingUpload]:
        store = self.store
        uploads = []
        for blob in self._walk(self.folder, "/"):
            key = (blob.metadata or {}).get(_KEY)
            upload_id = blob.name[len(self.folder) :]
            if key is None or not _UPLOAD_ID.match(upload_id):
                continue
            if key.startswith(prefix) and store.keys.in_view(key):
                uploads.append(PendingUpload(key, upload_id, blob.time_created.timestamp()))
        return sorted(uploads)

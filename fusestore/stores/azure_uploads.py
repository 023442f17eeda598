"""The multipart contract of the az:// driver, on a block blob's uncommitted blocks.

- `start` picks an upload id and stages the upload's metadata as blocks of its own
  (see `azure_names`): nothing appears at the key, and the blob's uncommitted block list
  now names the upload. A restarted process finds it there, metadata included.
- `put_part` stages part n as the block `<upload id>p<n>`.
- `complete` is one Put Block List of the parts' blocks, with the upload's metadata and
  the write's condition; Azure discards every other uncommitted block of the blob then.
- `pending` lists uploads from the uncommitted block lists of the blobs that have no
  committed version yet (a listing with uncommitted blobs, less the plain listing), and
  of the blobs this process started uploads to. An upload over an existing blob started
  by another process is not found (finding it would take a request per blob).
- `abort`: Azure has no request that drops uncommitted blocks and leaves the blob as it
  is. An aborted upload is gone for this contract at once: this process refuses its
  parts and its completion (NotFound) and no longer lists it. Its blocks go:
  * at once where the blob has no committed version and no other upload is staging
    into it: an empty Put Block List (If-None-Match: *) commits nothing and discards
    them, and a Delete Blob (If-Match: that commit's etag) removes the empty blob it
    made; a reader may see that empty blob for the moment in between;
  * else at the blob's next commit (the next write of that key), or when Azure
    discards uncommitted blocks a week after the last one was staged. Until then a
    process restarted since the abort would not know the upload was aborted; it lists
    it only if the blob has no committed version, and aborting it again removes it.

Every method blocks on one or more requests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from azure.core import MatchConditions

from .azure_container import Container
from .azure_errors import conditions, etag_of
from .azure_names import (
    encode_metadata,
    is_upload_id,
    metadata_block_ids,
    new_upload_id,
    parse_block_id,
    part_block_id,
    upload_started,
    uploads_in,
)
from .base import Body, CompletedPart, PendingUpload, read_body
from .errors import AlreadyExists, NotFound, PreconditionFailed
from .keys import check_metadata

#: Azure discards uncommitted blocks a week after the last was staged: an aborted upload
#: older than this needs hiding no more.
_FORGET_ABORTED_AFTER = 8 * 24 * 3600
#: The bytes of each metadata block (what matters is its id; some services refuse empty blocks).
_META_BODY = b"m"


class Uploads:
    """The multipart uploads of one store. Thread-safe: the in-process registry of live
    and aborted uploads is behind a lock."""

    def __init__(self, store: Container) -> None:
        self._store = store
        self._lock = threading.Lock()
        #: uploads this process started and has neither completed nor aborted: id -> (key, metadata)
        self._live: dict[str, tuple[str, dict[str, str]]] = {}
        self._aborted: set[str] = set()

    def start(self, key: str, metadata: Mapping[str, str] | None) -> str:
        store = self._store
        full = store.keys.full(key)
        meta = check_metadata(dict(metadata or {}))
        store.check_writable()
        upload_id = new_upload_id()
        blob = store.blob(full)
        with store.translate(key):
            for block_id in metadata_block_ids(upload_id, meta):
                blob.stage_block(block_id, _META_BODY, length=len(_META_BODY))
        with self._lock:
            self._live[upload_id] = (key, meta)
        return upload_id

    def put_part(self, key: str, upload_id: str, number: int, body: Body) -> CompletedPart:
        store = self._store
        full = store.keys.full(key)
        if not 1 <= number <= store.max_parts:
            raise ValueError(f"part number {number} is outside 1..{store.max_parts}")
        self._metadata(key, upload_id)  # NotFound for an unknown or aborted upload
        data = read_body(body)
        block_id = part_block_id(upload_id, number)
        with store.translate(key):
            store.blob(full).stage_block(block_id, data, length=len(data))
        return CompletedPart(number, block_id)

    def complete(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[CompletedPart],
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        store = self._store
        full = store.keys.full(key)
        store.check_writable()
        extra, condition = conditions(if_match, if_none_match)
        meta = self._metadata(key, upload_id)
        numbers = sorted({part.number for part in parts})
        if not numbers:
            raise ValueError("an upload completes with at least one part")
        blocks = [part_block_id(upload_id, n) for n in numbers]
        with store.conditional(key, condition):
            r = store.blob(full).commit_block_list(blocks, metadata=encode_metadata(meta), **extra)
        with self._lock:
            self._live.pop(upload_id, None)
        return etag_of(r["etag"])

    def _metadata(self, key: str, upload_id: str) -> dict[str, str]:
        """The upload's metadata: from this process's registry, else from the blob's
        uncommitted blocks (a process restarted since the start). NotFound when the
        upload is unknown, aborted, or was completed."""
        with self._lock:
            if upload_id in self._aborted or not is_upload_id(upload_id):
                raise NotFound(f"no such upload of {key!r}: {upload_id}", key=key)
            live = self._live.get(upload_id)
        if live is not None and live[0] == key:
            return live[1]
        found = uploads_in(self._uncommitted(key))
        meta = found.get(upload_id)
        if meta is None:
            raise NotFound(f"no such upload of {key!r}: {upload_id}", key=key)
        return meta

    def _uncommitted(self, key: str) -> list[str]:
        """The ids of the blob's uncommitted blocks ([] when there is no such blob)."""
        store = self._store
        try:
            with store.translate(key):
                _, uncommitted = store.blob(store.keys.full(key)).get_block_list("uncommitted")
        except NotFound:
            return []
        return [block.id for block in uncommitted]

    def abort(self, key: str, upload_id: str) -> None:
        store = self._store
        full = store.keys.full(key)
        with self._lock:
            self._live.pop(upload_id, None)
            horizon = time.time() - _FORGET_ABORTED_AFTER
            self._aborted = {u for u in self._aborted if upload_started(u) > horizon}
            if is_upload_id(upload_id):
                self._aborted.add(upload_id)
        blocks = self._uncommitted(key)
        others = {p.upload_id for b in blocks if (p := parse_block_id(b)) is not None} - {upload_id}
        with self._lock:
            others -= self._aborted
        foreign = any(parse_block_id(b) is None for b in blocks)
        if not blocks or others or foreign:
            return  # nothing staged, or blocks that are not this upload's to drop
        try:
            store.head(key)
        except NotFound:
            pass
        else:
            return  # a committed version: its next commit discards the blocks
        blob = store.blob(full)
        try:
            with store.translate(key, condition="none-match"):
                r = blob.commit_block_list([], match_condition=MatchConditions.IfMissing)
        except AlreadyExists:
            return  # a writer committed meanwhile, and so discarded the blocks
        try:
            with store.translate(key, condition="match"):
                blob.delete_blob(etag=r["etag"], match_condition=MatchConditions.IfNotModified)
        except (NotFound, PreconditionFailed):
            pass  # gone already, or a writer replaced the empty blob: theirs stays

    def pending(self, prefix: str) -> list[PendingUpload]:
        store = self._store
        full_prefix = store.keys.full_prefix(prefix) or None
        with store.translate(prefix or None):
            every = {
                b.name
                for b in store.client.list_blobs(name_starts_with=full_prefix, include=["uncommittedblobs"])
            }
            committed = {b.name for b in store.client.list_blobs(name_starts_with=full_prefix)}
        candidates = {store.keys.relative(name) for name in every - committed}
        with self._lock:
            candidates |= {
                k for k, _ in self._live.values() if k.startswith(prefix) and store.keys.in_view(k)
            }
            aborted = set(self._aborted)
        found: list[PendingUpload] = []
        for key in candidates:
            for upload_id in uploads_in(self._uncommitted(key)):
                if upload_id not in aborted:
                    found.append(PendingUpload(key, upload_id, upload_started(upload_id)))
        return sorted(found)

    def forget(self) -> dict[str, Any]:
        """This process's registry, emptied (tests: a restarted process knows nothing)."""
        with self._lock:
            state = {"live": dict(self._live), "aborted": set(self._aborted)}
            self._live.clear()
            self._aborted.clear()
        return state

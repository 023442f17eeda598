"""Multipart uploads this mount started and has not finished: journaled, and aborted once
nothing uses them any more.

A multipart upload that is neither completed nor aborted keeps its parts in the store (and
costs storage) forever, and only the mount that started it knows it is garbage. So every
upload is in the journal from before it starts until the store holds nothing of it. Its id
is recorded the moment the store names it, before any part is sent; and because the store
may take the start and the daemon die before the answer arrives, the ids of the uploads
already pending at that key are recorded just before the start (one listing of the key):
an upload found there later that is neither among them nor one still in use is ours.
Server clocks are never compared (some servers report a fixed `Initiated` time).

Uploads left behind — by a killed daemon (all of its records, at the next mount), or in
this run by a start whose answer was lost or an abort that failed — are "orphans"; the
flusher aborts them (`abort_orphans`) before it uploads anything else.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

from ..cache import Journal
from ..stores import Store, StoreError, StoreUnavailable
from .storecalls import StoreCalls

log = logging.getLogger(__name__)


class JournaledUploads:
    """The multipart uploads of this mount, as `Store.put_file`'s UploadTracker and for the
    flusher's staged uploads. Thread-safe: the tracker methods are called from the
    uploading threads; `starting` blocks (one listing of the key), the others are small
    journal transactions."""

    def __init__(self, journal: Journal, store: Store, journaled: dict[str, dict[str, Any]]) -> None:
        """`journaled`: the upload records the journal held when it was opened."""
        self.journal = journal
        self.store = store
        self._lock = threading.Lock()
        #: key -> {"ids": [upload ids], "before": [ids pending before a start] or None}
        self._records: dict[str, dict[str, Any]] = {
            key: {"ids": list(record.get("ids") or ()), "before": record.get("before")}
            for key, record in journaled.items()
        }
        self._live: set[tuple[str, str]] = set()  # (key, id) in use by this run
        self._starting: Counter[str] = Counter()  # keys with a start in flight
        self._given_up: set[str] = set()  # keys whose abort the store refused (next mount)
        #: keys where a start may have made an upload whose id we never learnt
        self._unanswered = {key for key, record in self._records.items() if record["before"] is not None}

    # -- UploadTracker ------------------------------------------------------------------

    def starting(self, key: str) -> None:
        """A multipart upload to `key` is about to start: notes the uploads pending there
        now (blocking: one listing), unless an earlier start's are still noted."""
        with self._lock:
            noted = self._records.get(key, {}).get("before") is not None
            self._starting[key] += 1
        if noted:
            return
        try:
            before = [u.upload_id for u in self.store.list_multipart(key) if u.key == key]
        except BaseException:
            with self._lock:
                self._starting[key] -= 1
            raise
        with self._lock:
            record = self._records.setdefault(key, {"ids": [], "before": None})
            if record["before"] is None:
                record["before"] = before
            self._save(key)

    def started(self, key: str, upload_id: str) -> None:
        with self._lock:
            self._starting[key] -= 1
            self._live.add((key, upload_id))
            record = self._records.setdefault(key, {"ids": [], "before": None})
            record["ids"].append(upload_id)
            if not self._starting[key] and key not in self._unanswered:
                record["before"] = None  # every start at the key got its answer
            self._save(key)

    def ended(self, key: str, upload_id: str) -> None:
        """Completed or aborted: the store keeps nothing of it."""
        with self._lock:
            self._live.discard((key, upload_id))
            record = self._records.get(key)
            if record is not None and upload_id in record["ids"]:
                record["ids"].remove(upload_id)
                self._save(key)

    def abandoned(self, key: str, upload_id: str | None) -> None:
        """An upload (None: a start whose answer never came) that could not be ended: an
        orphan, for `abort_orphans`."""
        with self._lock:
            if upload_id is None:
                self._starting[key] -= 1
                self._unanswered.add(key)
            else:
                self._live.discard((key, upload_id))

    # -- orphans ----------------------------------------------------------------------------

    def orphans(self) -> int:
        """How many uploads (or starts of unknown id) nothing uses and are still to abort."""
        with self._lock:
            return sum(len(ids) + (before is not None) for ids, before in self._orphaned().values())

    def _orphaned(self) -> dict[str, tuple[list[str], list[str] | None]]:
        found = {}
        for key, record in self._records.items():
            if key in self._given_up:
                continue
            ids = [i for i in record["ids"] if (key, i) not in self._live]
            unanswered = key in self._unanswered and not self._starting[key]
            before = record["before"] if unanswered else None
            if ids or before is not None:
                found[key] = (ids, before)
        return found

    async def abort_orphans(self, calls: StoreCalls) -> None:
        """Abort every orphan (yields; the store calls run in worker threads). Raises
        StoreUnavailable when the store does not answer (call again later); an abort the
        store refuses is logged and left to the next mount."""
        with self._lock:
            orphaned = self._orphaned()
        for key, (ids, before) in orphaned.items():
            try:
                for upload_id in ids:
                    await calls.run(self.store.abort_multipart, key, upload_id)
                    self.ended(key, upload_id)
                    log.info("aborted an unfinished multipart upload of %r", key)
                if before is not None:
                    await self._abort_unknown(calls, key, set(before))
            except StoreUnavailable:
                raise
            except StoreError as exc:
                log.warning("could not abort unfinished upload(s) of %r (next mount retries): %s", key, exc)
                with self._lock:
                    self._given_up.add(key)

    async def _abort_unknown(self, calls: StoreCalls, key: str, before: set[str]) -> None:
        """Abort what a start whose answer never came may have left at `key`: the uploads
        there that were not pending before it and that this run does not use."""
        for upload in await calls.run(self.store.list_multipart, key):
            with self._lock:
                ours = upload.key == key and upload.upload_id not in before
                ours = ours and (key, upload.upload_id) not in self._live and not self._starting[key]
            if ours:
                await calls.run(self.store.abort_multipart, key, upload.upload_id)
                log.info("aborted an unfinished multipart upload of %r whose start was not answered", key)
        with self._lock:
            record = self._records.get(key)
            if not self._starting[key]:
                self._unanswered.discard(key)
                if record is not None:
                    record["before"] = None
                    self._save(key)

    def _save(self, key: str) -> None:
        """Journal the record of `key` (under the lock)."""
        record = self._records.get(key)
        if record is not None and not record["ids"] and record["before"] is None:
            del self._records[key]
            record = None
        self.journal.save_upload(key, None if record is None else dict(record, ids=list(record["ids"])))

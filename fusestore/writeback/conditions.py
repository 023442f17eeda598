"""Whether the store honours conditional writes: learnt once per mount, before its first
conditioned upload.

Every upload is conditioned on the version its change was based on (If-Match its etag,
If-None-Match for a new file): that is what keeps two writers from overwriting each other.
AWS S3, MinIO, Ceph RGW and SeaweedFS honour both; a server that ignores them would let the
last writer win without a word. A mount therefore checks once, with an empty object of its
own, and where the conditions are ignored the flusher reads the key's etag (a HEAD) just
before each upload instead: a narrower check, since a write landing between the two is
still replaced.

`WriteConditions` holds what the probe found and checks an upload's conditions by hand
where the store ignores them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import trio

from ..cache import Journal
from ..stores import AlreadyExists, NotFound, PreconditionFailed, Store, StoreError, StoreUnavailable
from .conflicts import ConflictNames
from .storecalls import StoreCalls

log = logging.getLogger(__name__)

#: Names of the probe objects, at the top of the store; listings never show them.
PROBE_PREFIX = ".fusestore-probe-"


def probe_key(host: str) -> str:
    """A new probe object's key: the caller journals its delete before the probe, so that
    a daemon killed in the middle of it leaves nothing for good (the next mount deletes it)."""
    return f"{PROBE_PREFIX}{host}-{uuid.uuid4().hex[:12]}"


def probe_conditions(store: Store, key: str) -> bool:
    """Whether `store` refuses a create-only write over an object and a write conditioned
    on an etag the object does not have. Blocking: three small PUTs (an S3 store adds a
    HEAD to tell a failed If-Match from a missing object) and one delete of the probe
    object at `key`, which is gone again when this returns (unless the delete raised)."""
    store.put(key, b"", if_none_match=True)
    try:
        try:
            store.put(key, b"", if_none_match=True)
        except AlreadyExists:
            pass
        else:
            return False
        try:
            store.put(key, b"", if_match='"' + "0" * 32 + '"')
        except PreconditionFailed:
            return True
        return False
    finally:
        store.delete_many([key])


class WriteConditions:
    """Whether the store honours If-Match / If-None-Match (probed once, before the first
    conditioned upload), and the HEAD that stands in for them where it does not."""

    def __init__(
        self,
        store: Store,
        calls: StoreCalls,
        journal: Journal,
        names: ConflictNames,
        delete_later: Callable[[str], None],
    ) -> None:
        self.store = store
        self.calls = calls
        self.journal = journal
        #: this host's name (`names.host`) goes in probe keys
        self.names = names
        #: journals a key for the batched deletes (a probe object left behind)
        self.delete_later = delete_later
        #: whether the store honours If-Match / If-None-Match (None: not probed yet), and
        #: what the probe said
        self.honoured: bool | None = None
        self.note = "not probed yet (nothing uploaded)"
        self._probe_lock = trio.Lock()

    async def check(self, key: str, conditions: Mapping[str, Any]) -> None:
        """Where the store ignores write conditions, check them here just before the
        upload (one HEAD), raising what the store would have: NotFound, AlreadyExists or
        PreconditionFailed. The store is probed once, before the first conditioned upload.

        Worker thread: the HEAD (and the probe), in StoreCalls slots."""
        if not conditions:
            return
        if self.honoured is None:
            await self._probe()
        if self.honoured:
            return
        try:
            info = await self.calls.run(self.store.head, key)
        except NotFound:
            if "if_match" in conditions:
                raise
            return
        if conditions.get("if_none_match"):
            raise AlreadyExists(f"{key!r} exists", key=key)
        if info.etag != conditions.get("if_match"):
            raise PreconditionFailed(f"etag of {key!r} changed", key=key)

    async def _probe(self) -> None:
        """Worker thread: the probe's requests, in one StoreCalls slot."""
        async with self._probe_lock:
            if self.honoured is not None:
                return
            key = probe_key(self.names.host)
            # Journaled before its first PUT: should the daemon die during the probe, the
            # next mount deletes the object (and this one, should the probe fail).
            self.journal.add_delete(key)
            try:
                try:
                    honoured = await self.calls.run(probe_conditions, self.store, key)
                except BaseException:
                    self.delete_later(key)
                    raise
                self.journal.drop_delete(key)  # the probe deleted it
            except StoreUnavailable:
                raise  # the upload is tried again later, and the probe with it
            except StoreError as exc:
                self.honoured = False
                self.note = f"could not be probed ({exc}): a HEAD before each upload checks"
                log.warning("conditional writes %s", self.note)
                return
            self.honoured = honoured
            if honoured:
                self.note = "honoured by the store"
                log.info("the store honours conditional writes (If-Match, If-None-Match)")
            else:
                self.note = "IGNORED by the store: a HEAD before each upload checks"
                log.warning(
                    "the store ignores If-Match and If-None-Match: each upload is checked with a HEAD "
                    "just before it instead, and another client's write landing between the two "
                    "is replaced"
                )

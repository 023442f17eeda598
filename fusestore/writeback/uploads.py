"""The upload protocol: one node's bytes (or a copy, for a rename) to its key.

Every upload is conditioned on the version its change was based on (`write_conditions`):
If-Match its etag, If-None-Match for a new file, nothing for an object this mount itself
let go of. Another client's version found there is kept, and ours goes next to it as a
conflict copy (`_keep_both`). Each upload carries a token (see `landings`), so that an
upload whose answer was lost is recognised when it landed all the same (`_landed_etag`,
`settle`). What the store took is handed to the core as an `Uploaded` result
(`WritebackHost.upload_landed`); the core's state is the core's to change.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from ..cache import Content, ContentStore, Journal, Snapshot, SourceChanged
from ..core.namespace import Namespace
from ..core.nodes import Kind, Node
from ..stores import (
    AlreadyExists,
    NotFound,
    ObjectInfo,
    PreconditionFailed,
    Store,
    StoreError,
    StoreUnavailable,
)
from .conditions import WriteConditions
from .conflicts import ConflictNames
from .host import Uploaded, WritebackHost
from .landings import TOKEN, Landing, Landings
from .moves import still_at
from .queue import JobQueue, now
from .staging import Stager, staged_metadata, upload_part_size
from .storecalls import StoreCalls
from .unfinished import JournaledUploads

log = logging.getLogger(__name__)

#: Seconds a staged upload's object mtime (its completion) may differ from the file's.
MTIME_SLACK = 2.0


def _put_body(store: Any, key: str, *, body: bytes, metadata: Mapping[str, str], **conditions: Any) -> str:
    """`store.put` with the key first, as `Uploader._send` calls an upload (blocking)."""
    etag: str = store.put(key, body, metadata, **conditions)
    return etag


class LandedLate(ValueError):
    """An upload's condition failed on an earlier upload of this mount's that the store
    took late: the file is now based on it; upload again (soon)."""


class Conflict(Exception):
    """The store's object at a key is no longer the one our change was based on."""


class Uploader:
    """Uploads one node at a time per call (`upload`), and settles uploads whose answer
    never came (`settle`). The caller holds the key (`JobQueue.claim`)."""

    def __init__(
        self,
        queue: JobQueue,
        host: WritebackHost,
        ns: Namespace,
        store: Store,
        calls: StoreCalls,
        journal: Journal,
        contents: ContentStore,
        uploads: JournaledUploads,
        landings: Landings,
        stager: Stager,
        conditions: WriteConditions,
        names: ConflictNames,
    ) -> None:
        self.queue = queue
        self.host = host
        self.ns = ns
        self.store = store
        self.calls = calls
        self.journal = journal
        self.contents = contents
        #: the multipart uploads in flight, journaled by id (a big file's upload is one)
        self.uploads = uploads
        self.landings = landings
        self.stager = stager
        self.conditions = conditions
        self.names = names
        #: uploads that found another client's version at the key (each kept both)
        self.conflicts = 0
        #: bytes uploaded so far (for progress rates)
        self.uploaded_bytes = 0

    async def settle(self, landing: Landing) -> None:
        """Find out whether an upload whose answer never came landed (one HEAD), and if so
        make it the base of the file still at its key, or delete it (see `landings`).

        Worker thread: the HEAD, in one StoreCalls slot."""
        key = landing.key
        await self.queue.claim(key)  # no upload of the key meanwhile
        try:
            await self._settle_claimed(landing)
        finally:
            self.queue.busy_keys.discard(key)

    async def _settle_claimed(self, landing: Landing) -> None:
        """Worker thread: the HEAD, in one StoreCalls slot."""
        key = landing.key
        try:
            info: ObjectInfo | None = await self.calls.run(self.store.head, key)
        except NotFound:
            info = None
        except StoreUnavailable:
            raise
        except StoreError as exc:
            log.warning("%r: could not learn whether an upload whose answer never came landed: %s", key, exc)
            info = None
        if landing.token not in self.landings.unsettled:
            return  # settled meanwhile
        if not landing.carried_by(info):
            # Nothing of it landed (or another client wrote since): what the directory
            # shows there must come from a new listing.
            parent = self.ns.node_at(key.rpartition("/")[0])
            if parent is not None and parent.is_dir:
                parent.listed_at = float("-inf")
            self.host.forget_listing(key)
            self.landings.not_there(landing.token)
            return
        assert info is not None
        node = self.ns.node_at(key)
        with self.journal.batch():
            if node is not None and landing.sent_by(node):
                log.info("%s: an upload whose answer never came landed; the next replaces it", node.path())
                self.host.based_on_own_upload(node, key, info)
            else:
                log.info("%r: an upload whose answer never came did land; no file needs it now", key)
                self.host.object_unneeded(key, info.etag)
            self.host.forget_listing(key)
            self.landings.end(landing.token)

    async def upload(self, node: Node, key: str) -> None:
        """Upload `node` (a file or symlink) to `key`, which the caller holds.

        Worker thread: the PUT, copy or multipart upload, in StoreCalls slots."""
        # A copy (a rename) is recognised by its source's etag too: an object whose
        # metadata is not known here is copied with its own, which holds no token.
        copy_of = None if node.data_dirty or node.remote_key is None else node.etag
        with self.landings.attempt(key, node, copy_of) as token:
            await self._upload_as(node, key, token)

    async def _upload_as(self, node: Node, key: str, token: str) -> None:
        """Upload `node` to `key`, carrying `token` (see `landings`).

        Worker thread: the PUT, copy or multipart upload, in StoreCalls slots."""
        version, data_version = node.version, node.data_version
        metadata = node.posix_attrs().to_metadata()
        self.ns.drop_delete(key)
        content: Content | None = None
        mtime_lost = False
        kept_unknown_metadata = False
        body: bytes | None = None
        moved_from: tuple[str, str] | None = None  # a copy's source object
        landed = token  # the token of what lands: a staged upload carries its own
        if (node.kind is Kind.SYMLINK or node.kind.special) and (node.data_dirty or node.remote_key is None):
            # A symlink's object holds its target; a special file's, nothing.
            body = node.target.encode("utf-8", "surrogateescape")
            size = len(body)
            put = partial(_put_body, self.store, body=body, metadata={**metadata, TOKEN: token})
            try:
                etag = await self._send(node, key, put, token)
            except Conflict:
                await self._keep_both(node, key, put, size, version, data_version)
                return
        elif node.data_dirty or node.remote_key is None:
            content = node.content
            if content is None:
                content = node.content = self.contents.new()
                self.contents.make_dirty(content)
            await self.host.fetch_base(node, content)
            if self.queue.due.get(node, -math.inf) > now() or not still_at(node, key):
                # Changed since it fell due (its job starts a moment later, and fetching
                # yields): it goes up a write-back delay after that change, not in the middle
                # of a rewrite (truncated and not yet written again), and at its new name.
                return
            content.ensure_file()  # an empty new file has none until written
            # What goes up is the file at this instant: its bytes (the snapshot: an upload
            # that finds it torn stores nothing), its size and attributes, and the version
            # it is marked clean at. Nothing yields in between.
            version, data_version = node.version, node.data_version
            metadata = node.posix_attrs().to_metadata()
            snapshot = content.snapshot()
            size = snapshot.size
            staged = self.stager.staged.get(content)
            put = partial(
                self._put_content, content=content, snapshot=snapshot, metadata={**metadata, TOKEN: token}
            )
            try:
                if staged is not None and staged.usable_for(key, staged_metadata(metadata), size, self.store):
                    # Still listed while it completes: its sent parts are not dirty data.
                    finish = partial(self.stager.finish, staged, content, size)
                    etag = await self._send(node, key, put, staged.token, first=finish)
                    if self.stager.staged.get(content) is staged:
                        del self.stager.staged[content]
                    metadata, landed = staged.metadata, staged.token
                    # The object's mtime is its completion time; one set apart from the last
                    # write (utimens, `cp -p`) is written by a copy onto itself afterwards.
                    mtime_lost = abs(node.mtime_ns / 1e9 - time.time()) > MTIME_SLACK
                else:
                    if staged is not None:
                        del self.stager.staged[content]
                        await self.stager.abort(staged)
                    etag = await self._send(node, key, put, token)
            except Conflict:
                await self._keep_both(node, key, put, size, version, data_version)
                return
            except SourceChanged:
                # Written again during the upload (which stored nothing): the write has
                # made the node due again, as any change does.
                self.queue.schedule(node)
                return
            finally:
                snapshot.close()
            self.uploaded_bytes += size
        else:
            source = node.remote_key
            # Attributes never read from the object (a listing does not carry them) are
            # the object's own: the copy keeps them.
            kept_unknown_metadata = node.attrs_guessed
            # The same bytes: another tool's metadata names still describe them.
            metadata = node.posix_attrs().to_metadata(self.ns.stored_metadata(node))
            copied_metadata = None if kept_unknown_metadata else {**metadata, TOKEN: token}
            seen = ObjectInfo(source, node.remote_size, node.etag or "", 0.0)
            moved_from = (source, seen.etag)
            try:
                try:
                    etag = await self.calls.run(
                        partial(self.store.copy, source, key, copied_metadata, expect=seen)
                    )
                except PreconditionFailed:
                    if not node.attached:
                        # Removed during the copy: its source was let go then, and this
                        # mount may have written a new file there since. Nothing is kept.
                        return
                    log.warning(
                        "%s: changed in the store by another client; moving its new version", node.path()
                    )
                    moved_from = None  # other bytes than those the cache mirrors
                    etag = await self.calls.run(self.store.copy, source, key, copied_metadata)
            except NotFound:
                if node.remote_key == source:
                    log.error(
                        "%s: its object %r vanished from the store before it could be moved",
                        node.path(),
                        source,
                    )
                    self.ns.release_remote(node)
                    node.data_dirty = True  # upload whatever the cache has
                raise
            size = node.remote_size

        landed_as = None if kept_unknown_metadata else metadata
        self.host.upload_landed(
            Uploaded(node, key, etag, size, version, data_version, landed_as, content, moved_from, mtime_lost)
        )
        with self.journal.batch():
            self.host.record(node)
            # In the record's transaction: a landing no record explains would be taken
            # for an object no file needs after a crash (see `landings`).
            self.landings.landed(key, landed)
        if node.pending:
            self.queue.schedule(node)

    @staticmethod
    def write_conditions(node: Node, key: str) -> dict[str, Any]:
        """What an upload of `node` to `key` may replace: the version its change was based
        on (If-Match), nothing (If-None-Match: a new file), or whatever is there (an
        object this mount itself meant to replace: a file removed or renamed over here)."""
        if node.remote_key == key:
            return {"if_match": node.etag} if node.etag else {}
        if node.overwrites == key:
            return {}
        return {"if_none_match": True}

    async def _send(
        self,
        node: Node,
        key: str,
        put: Callable[..., str],
        token: str,
        first: Callable[[Mapping[str, Any]], Awaitable[str]] | None = None,
    ) -> str:
        """The etag of uploading `node` to `key` with `put(key, **conditions)` (blocking,
        run in a worker thread), or with `first(conditions)` when given (the completion of
        a staged upload), on the condition that the store still holds what the change was
        based on. A remote delete does not stop it: our changed data creates the object
        again (with `put`). Raises Conflict when another client put its own version there.
        An object carrying `token` is this very upload, landed although the condition
        then failed (a retry after its answer was lost): the upload succeeded.

        Worker thread: `put`, and the HEADs checking conditions, in StoreCalls slots."""
        conditions = self.write_conditions(node, key)
        if not conditions:
            self.landings.unconditioned(token)  # see `Landings.landed`
        try:
            await self.conditions.check(key, conditions)
            if first is not None:
                return await first(conditions)
            etag: str = await self.calls.run(partial(put, key, **conditions))
            return etag
        except (NotFound, PreconditionFailed, AlreadyExists) as exc:
            landed = await self._landed_etag(key, token, node)
            if landed is not None:
                return landed
            if not isinstance(exc, NotFound):
                raise Conflict(key) from None
            if "if_match" not in conditions:
                raise
            log.warning(
                "%s: deleted in the store by another client; this mount's changes create it again",
                node.path(),
            )
            try:
                await self.conditions.check(key, {"if_none_match": True})
                etag = await self.calls.run(partial(put, key, if_none_match=True))
                return etag
            except AlreadyExists:
                landed = await self._landed_etag(key, token, node)
                if landed is not None:
                    return landed
                raise Conflict(key) from None

    async def _landed_etag(self, key: str, token: str, node: Node) -> str | None:
        """The etag of the object at `key` if it is the upload carrying `token` (one HEAD).
        LandedLate if it is an earlier upload of this mount's, taken by the store after
        this mount found it missing (see `landings`): `node` is then based on it.

        Worker thread: the HEAD, in one StoreCalls slot."""
        try:
            info = await self.calls.run(self.store.head, key)
        except NotFound:
            return None
        if (info.metadata or {}).get(TOKEN) != token:
            late = self.landings.late_at(key, info)
            if late is None:
                return None
            log.info("%r: an earlier upload of this mount landed late; the next replaces it", key)
            with self.journal.batch():
                if late.sent_by(node) or node.remote_key == key:
                    # Its own, or one it replaced since (an unconditioned upload the store
                    # finished after a newer one): the cache holds every byte this upload
                    # sends (`fetch_base` ran), so its next try is based on what is there.
                    self.host.based_on_own_upload(node, key, info)
                else:
                    node.overwrites = key  # another file's, which this mount let go of
                    self.host.record(node)
                self.landings.end(late.token)
            raise LandedLate(f"{key!r}: an earlier upload of this mount landed late")
        log.info("%r: the store took this upload although its answer was lost", key)
        return info.etag

    async def _keep_both(
        self, node: Node, key: str, put: Callable[..., str], size: int, version: int, data_version: int
    ) -> None:
        """Another client changed `key` since this mount read it: theirs stays at the key,
        ours goes next to it (create-only, with `put`: the node at `version`) as a conflict
        copy, and the mount shows theirs from now on.

        Worker thread: the copy's PUT and a HEAD, in StoreCalls slots."""
        attempt = 1
        while True:
            copy_key = self.names.key(key, time.time(), attempt)
            try:
                copy_etag: str = await self.calls.run(partial(put, copy_key, if_none_match=True))
                break
            except AlreadyExists:
                attempt += 1
        self.conflicts += 1
        self.queue.recent.note(
            "conflict", f"{node.path()}: changed by another client; this version kept as /{copy_key}"
        )
        log.warning(
            "%s: changed in the store by another client since this mount read it; theirs stays at %r, "
            "this mount's version is kept as %r",
            node.path(),
            key,
            copy_key,
        )
        try:
            info = await self.calls.run(self.store.head, key)
        except NotFound:
            info = None  # gone again meanwhile: our version goes back to the key as well
        if info is None or node.data_version != data_version or not node.attached or node.key != key:
            # Written, moved or removed meanwhile: the next upload decides again (a change
            # made since is based on the same old version, and is kept as a copy of its own),
            # after the write-back delay as any change: not at once, or it would catch a file
            # being rewritten between its truncation and its new bytes.
            self.host.forget_listing(copy_key)
            if info is None:
                self.ns.release_remote(node)
            if node.attached:
                self.queue.schedule(node)
            return
        content = node.content
        if content is not None and content.dirty:
            self.host.uploaded_clean(node, content, copy_key, copy_etag)
        attributes_changed = node.version != version
        await self.host.adopt_remote_version(node, info, copy_key, copy_etag, size)
        if attributes_changed:
            # Only attributes changed meanwhile (the kernel's mtime at a close, a chmod):
            # they follow onto the copy (a copy of it onto itself), rather than a second
            # conflict copy of the same bytes.
            node.meta_dirty = True
            self.host.record(node)
            self.queue.schedule(node)

    def _put_content(
        self,
        key: str,
        content: Content,
        snapshot: Snapshot,
        metadata: Mapping[str, str],
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        """Upload `snapshot` of a cache file, whole or not at all (SourceChanged).

        Worker thread: blocking (reads the cache file, sends it)."""
        store = self.store
        with open(content.path, "rb") as source:
            return store.put_file(
                key,
                source,
                snapshot.size,
                metadata,
                if_match=if_match,
                if_none_match=if_none_match,
                part_size=upload_part_size(store, snapshot.size),
                tracker=self.uploads,
                check=snapshot.check,
            )

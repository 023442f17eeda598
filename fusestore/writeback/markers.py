"""How a directory's `dir/` marker gets to its key: moved, or written.

A marker the store holds at the directory's old name (the directory was renamed) and
whose attributes were not changed here is moved as a file is: a server-side copy of the
marker object to the new key, whose old key is then deleted as a file's source is
(`Namespace.moving_from` keeps it until then, and the journal records it as the
directory's `marker_key`). A copy needs no HEAD first and keeps the marker's own
metadata where this mount never read it, so a rename (during an outage too) never
replaces attributes it did not know with the mount's defaults. Any other marker — one
this mount makes, one whose attributes were set here, one whose source vanished — is
written (PUT) with the attributes the mount shows.

`MarkerWriter.reconcile` is a directory's upload job: its marker written, moved or deleted
(the delete is left to the batched deletes).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial

from ..cache.diskfull import Index
from ..core.namespace import Namespace
from ..core.nodes import Node
from ..stores import NotFound, Store
from .host import WritebackHost
from .moves import MoveSources
from .queue import JobQueue
from .storecalls import StoreCalls

log = logging.getLogger(__name__)


def marker_source(node: Node) -> str | None:
    """The marker object to copy to `node`'s prefix, or None: write one (synchronous)."""
    source = node.marker_key
    if source is None or source == node.prefix or node.meta_dirty:
        return None
    return source


def write_marker(
    store: Store, key: str, metadata: Mapping[str, str], source: str | None, keep_metadata: bool
) -> tuple[str, Mapping[str, str] | None]:
    """Put the marker at `key`: a copy of `source` when given (with its own metadata where
    `keep_metadata`, else with `metadata`), else an empty object with `metadata`. Returns
    its etag and the metadata written (None: the source's, unknown here). Blocking."""
    if source is not None:
        written = None if keep_metadata else metadata
        try:
            return store.copy(source, key, written), written
        except NotFound:
            log.warning(
                "the directory marker %r vanished from the store before it could be moved to %r; "
                "written there with the attributes shown",
                source,
                key,
            )
    return store.put(key, b"", metadata), metadata


class MarkerWriter:
    """A directory's job: its marker put (or moved) to its prefix, or given up."""

    def __init__(
        self,
        queue: JobQueue,
        host: WritebackHost,
        ns: Namespace,
        index: Index,
        store: Store,
        calls: StoreCalls,
        moves: MoveSources,
    ) -> None:
        self.queue = queue
        self.host = host
        self.ns = ns
        self.index = index
        self.store = store
        self.calls = calls
        self.moves = moves

    async def reconcile(self, node: Node) -> None:
        """Bring directory `node`'s marker to what it needs.

        Worker thread: the marker's PUT or copy, in one StoreCalls slot."""
        host, queue = self.host, self.queue
        work = host.marker_work(node)
        if work == "put":
            key = node.prefix
            if not await self.moves.clear_way(node, key):
                return
            source = marker_source(node)
            stored = self.index.get(("meta", source)) if source is not None else None
            metadata = node.posix_attrs().to_metadata(stored[1] if stored else None)
            write = partial(write_marker, self.store, key, metadata, source, node.attrs_guessed)
            version = node.version
            await queue.claim(key)
            try:
                self.ns.drop_delete(key)
                etag, written = await self.calls.run(write)
            finally:
                queue.busy_keys.discard(key)
            again = host.marker_landed(node, key, etag, written, version)
            if again is None and host.marker_work(node) == "delete":
                # Filled while its marker was written (nothing changed its own version):
                # the marker it no longer needs goes, as soon as the entries hold the prefix.
                again = node
            if again is not None:
                queue.schedule(again, delay=0)
        elif work == "delete":
            # Only once something below holds the prefix in the store, or the directory
            # would vanish for other clients meanwhile.
            if any(
                sub is not node and (sub.pending or (sub.is_dir and host.marker_work(sub) == "put"))
                for sub in node.walk()
            ):
                queue.schedule(node, delay=0.2)
                return
            host.marker_unwanted(node)
        host.record(node)

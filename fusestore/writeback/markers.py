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
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ..core.nodes import Node
from ..stores import NotFound, Store

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

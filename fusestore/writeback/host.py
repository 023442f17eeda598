"""What writeback asks of the file system it uploads for: the `WritebackHost` protocol.

Writeback owns the store traffic (when, how, with which conditions); the core owns its
state (the tree, the journal's node records, listings, the cache's contents). Writeback
reaches the core only through the operations listed here, and hands back what an upload
did as a result (`Uploaded`, a written marker, deleted keys) for the core to take in.
Every method runs on the trio thread; none of them calls the store but those marked
`async`, which may (a fetch, a HEAD).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..cache import Content
from ..core.nodes import Node
from ..stores import ObjectInfo


class WritebackSettings(Protocol):
    """The mount options writeback reads."""

    @property
    def writeback_delay(self) -> float: ...

    @property
    def upload_workers(self) -> int: ...


@dataclass(frozen=True)
class Uploaded:
    """An upload (or copy) of `node` that the store took: the object `key` now holds
    what `node` was at `version` (its data at `data_version`)."""

    node: Node
    key: str
    etag: str
    size: int
    version: int
    data_version: int
    #: the metadata the object carries (None: the object's own, unknown here, was kept)
    metadata: Mapping[str, str] | None
    #: the cache file that went up (None: a copy, or a symlink's target)
    content: Content | None
    #: a copy's source object (key, etag), when the bytes are those the cache mirrors
    moved_from: tuple[str, str] | None
    #: the object's mtime is its completion time, not the file's: write it again
    mtime_lost: bool


class WritebackHost(Protocol):
    """The core operations writeback uses (implemented by the core)."""

    @property
    def space_wanted(self) -> int:
        """How many writers wait for dirty space (big files are then staged)."""
        ...

    def record(self, node: Node) -> None:
        """Journal `node` as it is now (or drop its record once nothing is pending)."""

    def record_if_room(self, node: Node) -> None:
        """`record`, unless the cache disk is full (then later)."""

    def forget_listing(self, key: str) -> None:
        """The store changed at `key`: remembered listings above it are stale."""

    def object_unneeded(self, key: str, etag: str | None = None) -> None:
        """No node needs the object at `key` (the version `etag`, where known) any more."""

    def marker_wanted(self, node: Node) -> bool | None:
        """Whether directory `node` needs a marker object of its own."""

    def marker_work(self, node: Node) -> str | None:
        """What directory `node`'s marker needs: "put", "delete" or nothing."""

    def reclaim_marker(self, directory: Node) -> None:
        """A marker still to delete at `directory`'s prefix becomes `directory`'s again."""

    async def fetch_base(self, node: Node, content: Content) -> None:
        """Bring the bytes of the version `node` changed that `content` lacks."""

    async def fetch_all(self, content: Content) -> None:
        """Bring every block `content` lacks."""

    def clean_content(self, node: Node) -> Content:
        """A content for `node`'s object (cached, or to be fetched)."""

    async def read_attrs(self, node: Node) -> None:
        """Read the attributes a listing did not carry (one HEAD); raises while the store
        does not answer, and never replaces `node`."""

    def dirty_space_freed(self) -> None:
        """Writers waiting for dirty space may look again."""

    def uploaded_clean(self, node: Node, content: Content, key: str, etag: str) -> None:
        """`content` is what the store now holds at `key`: clean, cached under `etag`."""

    def upload_landed(self, uploaded: Uploaded) -> None:
        """Take in an upload the store took: the node's object, moves, the object it
        replaced, clean data. The caller journals the node afterwards."""

    def based_on_own_upload(self, node: Node, key: str, info: ObjectInfo) -> None:
        """`node` is based from now on on `info` at `key`, an upload of this mount's own
        that landed without its answer; journaled."""

    def marker_landed(
        self, node: Node, key: str, etag: str, written: Mapping[str, str] | None, version: int
    ) -> Node | None:
        """Take in the marker of directory `node` (at `version`) written at `key`; returns
        the directory whose marker is to be written again at once, if any."""

    def marker_unwanted(self, node: Node) -> None:
        """Directory `node` no longer wants its marker: the object goes."""

    def keys_deleted(self, keys: Sequence[str]) -> None:
        """The store deleted `keys` (one batch)."""

    async def adopt_remote_version(
        self, node: Node, info: ObjectInfo, copy_key: str, copy_etag: str, copy_size: int
    ) -> None:
        """After a conflict: `node` becomes its conflict copy `copy_key`, and its name shows
        the store's version `info`."""

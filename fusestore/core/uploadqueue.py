"""`UploadQueue`: what the core uses of the write-back, and nothing more.

The core's parts never import the write-back package: they are handed an object with
these members (the flusher). Every one is called on the trio thread; all but
`wait_uploaded` are synchronous and cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ..cache import Content
from .nodes import Node


class StagedParts(Protocol):
    """The parts of a big file sent ahead while it is still written."""

    @property
    def staged_bytes(self) -> int: ...


class ParkedNodes(Protocol):
    """Nodes whose key the store refuses for good."""

    def reason(self, node: Node) -> str | None: ...


class UploadQueue(Protocol):
    """The upload queue as the core sees it."""

    @property
    def staged(self) -> Mapping[Content, StagedParts]: ...
    @property
    def parked(self) -> ParkedNodes: ...

    def schedule(self, node: Node, delay: float | None = None) -> None:
        """Upload `node` after `delay` (default: the writeback delay) unless it changes again."""

    def holds(self, node: Node) -> bool:
        """Whether `node` has a job: due, running, failed or parked."""

    def forget(self, node: Node) -> None:
        """`node` has nothing to upload any more."""

    def wake(self) -> None:
        """Look at the work again (deletes came)."""

    def hurry(self) -> None:
        """Everything due now (dirty space is short)."""

    def written(self, content: Content, start: int, end: float) -> None:
        """Bytes [start, end) of `content` changed (written, or cut off by a truncate)."""

    def staged_bytes(self) -> int:
        """Bytes of dirty files already sent as parts of a staged upload."""
        ...

    async def wait_uploaded(self, node: Node) -> None:
        """Yield until the store holds `node` as it is now or later."""

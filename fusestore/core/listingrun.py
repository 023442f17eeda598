"""`ListingRun`: one listing of a directory in flight, merged page by page, and read by
directory handles while it grows.

Everything here runs on the trio thread; `wait_past` yields until the next page.
"""

from __future__ import annotations

import copy

import trio

from ..stores import StoreError
from .namespace import ListingMerge
from .nodes import Node


class ListingRun:
    """One listing of a directory, its pages merged as they come (by `Listings`), shared
    by every handle opened on the directory meanwhile and every request waiting for it.

    Guarantees: `names` only grows, and only until `ended`: the names the listing's pages
    showed, each once, in the order the pages came (sorted within a page). A position in
    it is a readdir cookie that stays valid for every handle sharing the run, whatever
    happens to the directory after. Once `ended`, the listing either `complete`d (every
    page merged, what it did not show removed), or failed (`failure`: those who need
    more get it; also when it was `interrupted`), or stopped short with nothing to report
    (the older listing stands, or the directory moved). `wait_past` blocks; the rest does not.
    """

    def __init__(self, merge: ListingMerge, *, patient: bool, ahead: bool = False) -> None:
        self.merge = merge
        #: each page asked until the I/O timeout ends it (nothing older to show), or tried once
        self.patient = patient
        #: set once someone needs the listing: one read ahead of a walk (`ahead`) takes its
        #: first page and then waits for this before it asks for more
        self.claimed = trio.Event()
        if not ahead:
            self.claimed.set()
        self.names: list[str] = []
        self.complete = False
        self.failure: StoreError | OSError | None = None
        #: cancelled (with the request that ran it, or the mount stopping): readers get
        #: `failure`, while a request that needs the listing lists anew
        self.interrupted = False
        self.ended = trio.Event()
        self._grew = trio.Event()

    def claim(self) -> ListingRun:
        """A handle or request uses this listing: it goes on to the end."""
        self.claimed.set()
        return self

    @property
    def directory(self) -> Node:
        return self.merge.directory

    def add(self, names: list[str]) -> None:
        """Names a page showed for the first time (merged into the directory already)."""
        if names:
            names.sort()
            self.names += names
            self._grew.set()
            self._grew = trio.Event()

    def end(
        self,
        *,
        complete: bool = False,
        failure: StoreError | OSError | None = None,
        interrupted: bool = False,
    ) -> None:
        self.complete = complete
        self.failure = failure
        self.interrupted = interrupted
        self.ended.set()
        self._grew.set()

    def raise_failure(self) -> None:
        """Raise what ended the run, if a failure did: a new exception for each caller
        (one raised in many tasks would gather all their tracebacks)."""
        if self.failure is not None:
            raise copy.copy(self.failure) from self.failure

    async def wait_past(self, count: int) -> None:
        """Return once `names` holds more than `count` names, or no more will come: then
        raise the failure that ended the run, if one did. Yields until the next page."""
        while len(self.names) <= count and not self.ended.is_set():
            await self._grew.wait()
        if len(self.names) <= count:
            self.raise_failure()

    def rest(self) -> list[str]:
        """Once ended: the directory's entries no page showed, sorted (local ones the store
        does not have yet; and, where the listing stopped short, those listed before)."""
        children = self.directory.children or {}
        seen = self.merge.seen
        return sorted(name for name in children if name not in seen)

"""Open files and directories: the handle numbers the kernel holds, and what each holds.

Everything here runs on the trio thread; only `readdir` yields (for a listing's next page).
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from ..cache import Content
from .errors import fs_error
from .listingrun import ListingRun
from .nodes import Node


@dataclass
class FileHandle:
    node: Node
    content: Content | None
    writable: bool
    next_offset: int = 0  # where a sequential reader reads next
    window: int = 1  # readahead, in blocks
    #: the node's generation when opened: the kernel inode this descriptor belongs to
    generation: int = 0
    #: the file end past which this descriptor may not write, once a write of its kernel
    #: inode could not be stored (see `lostwrites`)
    limit: int | None = None


@dataclass(slots=True)
class DirHandle:
    """An open directory: the names it gives, in order (entry i is followed by cookie
    i + 1), each resolved when given, so a name removed meanwhile is skipped and never a
    node no longer in the directory is handed out. While `listing` runs, `names` is its
    growing list, shared with every handle opened during it; once it ended, this
    handle's own copy with the directory's other entries appended."""

    node: Node
    names: list[str]
    listing: ListingRun | None = None


class Handles:
    """The handle table: numbers handed out in order, never reused while open. Owns the
    open counts of nodes (`opens`, `writers`) and the pins handles hold on contents."""

    def __init__(self) -> None:
        self._handles: dict[int, FileHandle | DirHandle] = {}
        self._next_fh = 1
        #: how many handles are open on each directory (compaction asks per directory)
        self._open_dirs: Counter[Node] = Counter()

    def add(self, handle: FileHandle | DirHandle) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = handle
        return fh

    def open_file(self, node: Node, flags: int) -> int:
        """A new handle on file `node`, opened with `flags`."""
        writable = flags & os.O_ACCMODE != os.O_RDONLY
        content = node.content
        if content is not None:
            content.pins += 1
        node.opens += 1
        node.writers += writable
        return self.add(FileHandle(node, content, writable, generation=node.generation))

    def get(self, fh: int) -> FileHandle | DirHandle:
        try:
            return self._handles[fh]
        except KeyError:
            raise fs_error(errno.EBADF) from None

    def find(self, fh: int | None) -> FileHandle | DirHandle | None:
        return self._handles.get(fh) if fh is not None else None

    def pop(self, fh: int) -> FileHandle | DirHandle | None:
        handle = self._handles.pop(fh, None)
        if isinstance(handle, DirHandle):
            self._open_dirs[handle.node] -= 1
            if not self._open_dirs[handle.node]:
                del self._open_dirs[handle.node]
        return handle

    def file(self, fh: int) -> FileHandle:
        handle = self.get(fh)
        if not isinstance(handle, FileHandle):
            raise fs_error(errno.EBADF)
        return handle

    def directory(self, fh: int) -> DirHandle:
        handle = self.get(fh)
        if not isinstance(handle, DirHandle):
            raise fs_error(errno.EBADF)
        return handle

    def open_dir(self, directory: Node, listing: ListingRun | None) -> int:
        """A new handle on `directory`: its entries now (sorted), or those of `listing`
        as its pages come."""
        self._open_dirs[directory] += 1
        if listing is None:
            assert directory.children is not None
            return self.add(DirHandle(directory, sorted(directory.children)))
        return self.add(DirHandle(directory, listing.names, listing))

    async def readdir(self, fh: int, start: int) -> Iterator[tuple[str, Node, int]]:
        """Entries of directory handle `fh` from position `start`; each comes with the
        cookie of the next one. Waits only while there is nothing to give yet (the
        listing's next page), and raises what ended the listing when that left nothing
        to give (EIO: the store did not answer). The iterator is lazy and gives what is
        there now: a request that stops when the kernel's buffer is full costs what it
        took, so a listing in many requests stays linear in its size."""
        handle = self.directory(fh)
        children = handle.node.children
        assert children is not None
        while True:
            names = handle.names
            while start < len(names) and names[start] not in children:
                start += 1  # removed since: skipped, the cookies after it unchanged
            listing = handle.listing
            if start < len(names) or listing is None:
                return self._entries(names, children, start)
            await listing.wait_past(start)
            if listing.ended.is_set() and len(listing.names) <= start:
                # No page will come: the rest is what the directory holds besides.
                handle.names = listing.names + listing.rest()
                handle.listing = None

    @staticmethod
    def _entries(names: list[str], children: dict[str, Node], start: int) -> Iterator[tuple[str, Node, int]]:
        for i in range(start, len(names)):
            name = names[i]
            node = children.get(name)
            if node is not None:
                yield name, node, i + 1

    def files(self) -> Iterator[FileHandle]:
        for handle in self._handles.values():
            if isinstance(handle, FileHandle):
                yield handle

    def is_open_dir(self, directory: Node) -> bool:
        """Whether a handle lists `directory` (its entries are held). O(1)."""
        return directory in self._open_dirs

    def unlinked_data_open(self) -> bool:
        """Whether a file removed while open still holds dirty data (its room comes back
        at its last release)."""
        return any(
            not handle.node.attached and handle.node.content is not None and handle.node.content.dirty
            for handle in self.files()
        )

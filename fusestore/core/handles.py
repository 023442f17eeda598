"""Open files and directories: the handle numbers the kernel holds, and what each holds.

Everything here is synchronous and runs on the trio thread.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass

from ..cache import Content
from .errors import fs_error
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


@dataclass
class DirHandle:
    node: Node
    entries: list[tuple[str, Node]]


class Handles:
    """The handle table: numbers handed out in order, never reused while open. Owns the
    open counts of nodes (`opens`, `writers`) and the pins handles hold on contents."""

    def __init__(self) -> None:
        self._handles: dict[int, FileHandle | DirHandle] = {}
        self._next_fh = 1

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
        return self._handles.pop(fh, None)

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

    def readdir(self, fh: int, start: int) -> Iterator[tuple[str, Node, int]]:
        """Entries of directory handle `fh` from position `start`; each comes with the
        cookie of the next one. Lazy: a request that stops when the kernel's buffer is full
        costs what it took, so a listing in many requests stays linear in its size."""
        entries = self.directory(fh).entries
        for i in range(start, len(entries)):
            name, node = entries[i]
            yield name, node, i + 1

    def files(self) -> Iterator[FileHandle]:
        for handle in self._handles.values():
            if isinstance(handle, FileHandle):
                yield handle

    def unlinked_data_open(self) -> bool:
        """Whether a file removed while open still holds dirty data (its room comes back
        at its last release)."""
        return any(
            not handle.node.attached and handle.node.content is not None and handle.node.content.dirty
            for handle in self.files()
        )

"""`Compaction`: entries the kernel forgot, and that hold nothing of their own, leave memory.

A mount holds one `Node` per entry a listing showed. Once the kernel has forgotten the
entries of a directory (a `find` is over and the kernel reclaimed its inodes, or
`drop_caches`), and none of them holds local state, the directory goes back to "not
listed": its nodes leave the inode table and the tree. What its listing said stays
remembered in the index for the TTL (`Listings.remember_listing`), so the next readdir or
lookup there merges it again without a LIST; after the TTL it lists, as it would anyway.

A node is kept, and with it its directory's entries and every directory above, while
anything holds it: a kernel lookup, an open handle, an open directory handle on its
directory, a journal record or any pending upload, move or flusher job, dirty or open
data, a pin, a lost write's generation. Its inode number is never handed out again (the
counter only grows), and the kernel holds none of the dropped ones.

Everything runs on the trio thread. `forgotten` is synchronous and O(1) (called from the
kernel's forget); `run` and `sweep` yield between directories, each directory's check
and drop is one synchronous step, linear in its entries.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import trio

from ..cache.pins import Pins
from .handles import Handles
from .namespace import Namespace
from .nodes import Node, shared, shared_int
from .uploadqueue import UploadQueue

#: How long after the kernel forgets entries the sweep starts: the kernel forgets in
#: batches, and one sweep per batch keeps the cost off the requests.
SWEEP_DELAY = 1.0
#: After a sweep dropped this many nodes, free memory goes back to the system.
TRIM_AFTER = 10_000


def release_free_memory() -> None:
    """glibc's `malloc_trim(0)`: the heap's free pages back to the system (blocking, a few
    milliseconds; nothing where the C library has no such call)."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


class Compaction:
    """Drops the loaded entries of directories nobody holds (see the module's docstring).
    `forgotten` is synchronous and cheap; `sweep` and `run` yield."""

    def __init__(
        self,
        ns: Namespace,
        handles: Handles,
        pins: Pins,
        flusher: UploadQueue,
        being_listed: Callable[[Node], bool],
    ) -> None:
        self.ns = ns
        self.handles = handles
        self.pins = pins
        self.flusher = flusher
        #: whether a listing of a directory is under way (it merges into the entries)
        self.being_listed = being_listed
        #: directories one of whose entries the kernel forgot since the last sweep
        self.candidates: set[Node] = set()
        self._due = trio.Event()
        #: nodes dropped since the mount started (for `status`)
        self.dropped = 0

    def forgotten(self, node: Node) -> None:
        """The kernel's lookup count of `node` fell (synchronous, O(1))."""
        parent = node.parent
        if node.lookups == 0 and node.attached and parent is not None:
            self.candidates.add(parent)
            self._due.set()

    async def run(self) -> None:
        """Sweep a moment after the kernel forgets entries (long-lived)."""
        while True:
            await self._due.wait()
            await trio.sleep(SWEEP_DELAY)
            self._due = trio.Event()
            await self.sweep()

    async def sweep(self) -> int:
        """Compact every candidate directory, and each directory above whose entries
        became droppable by it. Yields between directories. Returns the nodes dropped."""
        dropped = 0
        while self.candidates:
            directory = self.candidates.pop()
            count = await self._compact_below(directory)
            dropped += count
            parent = directory.parent
            if count and directory.lookups == 0 and directory.attached and parent is not None:
                self.candidates.add(parent)
        if dropped > len(self.ns.nodes):
            # A dict never shrinks as it loses entries: its table would stay at its peak.
            self.ns.nodes = dict(self.ns.nodes)
        if dropped >= TRIM_AFTER:
            shared.clear()
            shared_int.clear()
            # The C allocator keeps freed memory for reuse (the big dicts' tables are
            # malloc'ed): hand it back, so that the daemon's size follows what it holds.
            await trio.to_thread.run_sync(release_free_memory)
        return dropped

    async def _compact_below(self, directory: Node) -> int:
        """Compact the directories below `directory` that nothing holds, deepest first,
        then `directory` itself."""
        dropped = 0
        if not self._may_drop_entries(directory):
            return 0
        for child in list((directory.children or {}).values()):
            if child.is_dir and child.children and self._droppable(child):
                dropped += await self._compact_below(child)
        await trio.lowlevel.checkpoint()
        return dropped + self.compact(directory)

    def compact(self, directory: Node) -> int:
        """Drop the entries of `directory` when none of them is held and none is a
        directory with entries loaded (synchronous: one step). Returns how many went."""
        children = directory.children
        if not children or not self._may_drop_entries(directory):
            return 0
        for child in children.values():
            if not self._droppable(child) or child.children:
                return 0
        ns = self.ns
        for child in children.values():
            child.attached = False
            ns.nodes.pop(child.ino, None)
            if child.is_dir:
                prefix = child.prefix
                ns.hidden.pop(prefix, None)
                ns.conflict_copies.pop(prefix, None)
        count = len(children)
        directory.children = {}
        directory.listed_at = float("-inf")  # listed again (from the index inside the TTL)
        self.dropped += count
        return count

    def _may_drop_entries(self, directory: Node) -> bool:
        """Whether anything holds `directory`'s entries as a whole: an open directory
        handle, a listing under way, a pin at, above or below it."""
        if not directory.attached or not directory.is_dir:
            return False
        if any(handle_dir is directory for handle_dir in self.handles.directories()):
            return False
        if self.being_listed(directory):
            return False  # its later pages join the entries: dropped ones would be missing
        if self.pins.keys:
            key = directory.key
            if self.pins.covers(key) or any(not key or pin.startswith(key + "/") for pin in self.pins.keys):
                return False
        return True

    def _droppable(self, node: Node) -> bool:
        """Whether nothing but the tree holds `node` (its entries apart)."""
        if node.lookups or node.opens or node.jid is not None or node.generation:
            return False
        if node.data_dirty or node.meta_dirty or node.overwrites is not None:
            return False
        content = node.content
        if content is not None and (content.dirty or content.pins):
            return False
        source = node.source_key
        if source is not None and self.ns.moving_from.get(source) is node:
            return False
        if node.is_dir:
            if not self._may_drop_entries(node):
                return False
        elif node.remote_key is None or node.remote_key != node.key:
            return False  # not in the store yet, or still to be moved there
        return not self.flusher.holds(node)

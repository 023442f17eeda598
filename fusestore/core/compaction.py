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

Past `max_entries` nodes in memory, the mount does not wait for the kernel: it asks the
kernel to forget the entries of the directories read (opened, or loaded by any listing)
least recently, until it holds a fifth fewer than the bound, so that a walk of millions
of objects stays in bounded memory on both sides. Only directories whose entries could
all be dropped are asked for: none with an open handle, a listing under way, a pin, a
dirty or open file, or a directory below that the kernel holds. Directories are never
asked for (one may be a process's working directory, which forgetting would show as
deleted): a directory that holds directories loses its entries only once the kernel lets
those go by itself (memory pressure, `drop_caches`). A walk that adds entries faster
than the kernel forgets them (one from remembered listings) waits at each opendir while
past 1.5 times the bound.

Everything runs on the trio thread. `forgotten` and `loaded` are synchronous and O(1)
(called from the kernel's forget and opendir); `run`, `sweep` and `shed` yield between
directories, each directory's check and drop is one synchronous step, linear in its
entries. The kernel is told in a worker thread (`KernelNames.forget_all`).
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from collections.abc import Callable

import trio

from ..cache.pins import Pins
from .handles import Handles
from .kernelnames import KernelNames
from .namespace import Namespace
from .nodes import Node, shared, shared_int
from .settings import MountSettings
from .uploadqueue import UploadQueue

#: How long after the kernel forgets entries the sweep starts: the kernel forgets in
#: batches, and one sweep per batch keeps the cost off the requests.
SWEEP_DELAY = 1.0
#: After a sweep dropped this many nodes, free memory goes back to the system.
TRIM_AFTER = 10_000
#: Past `max_entries`, entries are shed down to this share of it: one round per many
#: directories read, not one per directory.
SHED_TO = 0.8
#: Between rounds of shedding while the bound is passed (entries asked for and not
#: dropped yet count as gone, so a round right after another does not shed more).
SHED_PAUSE = 0.25
#: ... and at most this long while they ask for nothing (what is left is in use, or the
#: kernel keeps what it was asked to forget: a file a process holds by its path, say).
MAX_SHED_PAUSE = 8.0
#: Entries the kernel was asked to forget and still keeps after this many seconds are
#: not waited for (a process may hold them).
STUCK_AFTER = 10.0
#: Past this multiple of the bound, a directory being opened waits for the shedding
#: (a walk from remembered listings adds entries faster than the kernel forgets them) ...
HARD_LIMIT = 1.5
#: ... for at most this many seconds at a time.
ROOM_WAIT = 5.0


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
        kernel: KernelNames,
        settings: MountSettings,
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
        self.kernel = kernel
        #: past this many nodes, the kernel is asked to forget entries (`shed`)
        self.max_entries = settings.max_entries
        #: directories with entries loaded, the one read (or loaded) least recently first
        self.recent: OrderedDict[Node, None] = OrderedDict()
        self._purged_at = 0  # len(recent) after its last purge of stale directories
        #: directories whose entries the kernel was asked to forget, not dropped yet
        self._asked: set[Node] = set()
        self._shed_due = trio.Event()
        #: whether rounds free entries: the last one asked for some, or the kernel is
        #: forgetting some asked for lately (true until a round says otherwise)
        self._helping = True
        self._pending = 0  # entries asked for, not dropped yet, at the last round
        self._asked_at = float("-inf")  # when a round last asked for entries
        self._progress = trio.Event()  # set at the end of each round and sweep
        #: entries the kernel was asked to forget since the mount started (for `status`)
        self.shed_count = 0

    def forgotten(self, node: Node) -> None:
        """The kernel's lookup count of `node` fell (synchronous, O(1))."""
        parent = node.parent
        if node.lookups == 0 and node.attached and parent is not None:
            self.candidates.add(parent)
            self._due.set()

    async def opening(self, directory: Node) -> None:
        """`directory` is being opened: `loaded`, then `room`."""
        self.loaded(directory)
        await self.room()

    def loaded(self, directory: Node) -> None:
        """`directory` is being read, or entries of it were merged from a listing (for an
        opendir, a lookup, a rename, a pin or a walk's read-ahead; synchronous, O(1)
        amortized): it becomes the most recently read, and a round of shedding is due if
        the bound is passed. So every directory with entries loaded is in the order (or
        asked for), and none holds its entries past the bound for good: a round may have
        passed over one while it held none (an opendir waiting for room), a lookup loads
        one with no opendir at all."""
        recent = self.recent
        recent[directory] = None
        recent.move_to_end(directory)
        self._asked.discard(directory)
        if len(recent) > 2 * self._purged_at + 1024:
            # Directories removed or emptied meanwhile would stay in the order for ever.
            for stale in [d for d in recent if not d.attached or not d.children]:
                del recent[stale]
            self._purged_at = len(recent)
        if len(self.ns.nodes) > self.max_entries:
            self._shed_due.set()

    def released(self, fh: int) -> None:
        """A directory handle closes (synchronous, O(1)): the directory was read, and its
        listing's entries, merged after its opendir, may have passed the bound."""
        self.handles.pop(fh)
        if len(self.ns.nodes) > self.max_entries:
            self._shed_due.set()

    async def room(self) -> None:
        """Wait while the nodes are past `HARD_LIMIT` times the bound and the rounds free
        entries, for up to `ROOM_WAIT` seconds (a directory being opened: so that a walk
        faster than the kernel forgets stays bounded). Returns at once otherwise: when
        nothing can be shed, nothing waits."""
        hard = self.max_entries * HARD_LIMIT
        if len(self.ns.nodes) <= hard or not self._helping:
            return  # every opendir but a few of a huge walk: no cancel scope, no await
        with trio.move_on_after(ROOM_WAIT):
            while len(self.ns.nodes) > hard and self._helping:
                await self._progress.wait()

    def _progressed(self) -> None:
        self._progress.set()
        self._progress = trio.Event()

    async def run(self) -> None:
        """Sweep a moment after the kernel forgets entries, and shed past the bound
        (long-lived)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._shed_when_due)
            while True:
                await self._due.wait()
                await trio.sleep(SWEEP_DELAY)
                self._due = trio.Event()
                await self.sweep()
                self._progressed()

    async def _shed_when_due(self) -> None:
        pause = SHED_PAUSE
        while True:
            await self._shed_due.wait()
            self._shed_due = trio.Event()
            asked = 0
            try:
                asked = await self.shed()
            finally:
                now = trio.current_time()
                if asked:
                    self._asked_at = now
                # Entries asked for a moment ago are on their way out; some the kernel
                # still keeps after STUCK_AFTER it may keep for good.
                awaited = bool(self._pending) and now - self._asked_at < STUCK_AFTER
                self._helping = bool(asked) or awaited
                self._progressed()
            # Past the bound, rounds go on (entries merged since count too; a directory
            # passed over may be free by then), less often while nothing is on its way.
            if len(self.ns.nodes) > self.max_entries:
                pause = SHED_PAUSE if self._helping else min(2 * pause, MAX_SHED_PAUSE)
                await trio.sleep(pause)
                self._shed_due.set()

    async def shed(self) -> int:
        """Ask the kernel to forget the entries of the least recently read directories
        whose entries could all be dropped, until the nodes left would be `SHED_TO` of
        the bound (yields; the kernel is told in a worker thread). Directories passed
        over go to the back of the order. Returns how many entries were asked for."""
        asked = self._asked
        asked.difference_update([d for d in asked if not d.attached or not d.children])
        # Entries asked for before and not forgotten yet are as good as gone.
        pending = self._pending = sum(len(d.children or ()) for d in asked)
        excess = len(self.ns.nodes) - pending - int(self.max_entries * SHED_TO)
        names: list[tuple[int, str]] = []
        recent = self.recent
        for _ in range(len(recent)):
            if excess <= 0:
                break
            directory, _ = recent.popitem(last=False)
            if not directory.attached or not directory.children:
                continue  # gone, or nothing loaded: read again, it comes back
            held = self._kernel_held(directory)
            if held is None:
                recent[directory] = None
                continue
            excess -= len(directory.children)
            if held:
                names += ((directory.ino, name) for name in held)
                asked.add(directory)
            else:  # the kernel holds none of them any more
                self.candidates.add(directory)
                self._due.set()
            await trio.lowlevel.checkpoint()
        if names and self.kernel.forget is not None:
            self.shed_count += len(names)
            await self.kernel.forget_all(names)
        return len(names)

    def _kernel_held(self, directory: Node) -> list[str] | None:
        """The names in `directory` the kernel holds, if its entries could all be dropped
        once the kernel forgets them; None if anything else holds one."""
        if not self._may_drop_entries(directory):
            return None
        held = []
        for name, child in (directory.children or {}).items():
            if child.is_dir and (child.lookups or child.children):
                # A directory the kernel holds is never asked for (it may be a working
                # directory, which its forgetting would show as deleted): its parent's
                # entries go once the kernel lets it go by itself.
                return None
            if not self._droppable(child, kernel_held=True):
                return None
            if child.lookups:
                held.append(name)
        return held

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
        self.recent.pop(directory, None)
        for child in children.values():
            child.attached = False
            ns.nodes.pop(child.ino, None)
            if child.is_dir:
                self.recent.pop(child, None)
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
        if self.handles.is_open_dir(directory):
            return False
        if self.being_listed(directory):
            return False  # its later pages join the entries: dropped ones would be missing
        if self.pins.keys:
            key = directory.key
            if self.pins.covers(key) or any(not key or pin.startswith(key + "/") for pin in self.pins.keys):
                return False
        return True

    def _droppable(self, node: Node, *, kernel_held: bool = False) -> bool:
        """Whether nothing but the tree holds `node` (its entries apart), nor the kernel
        unless `kernel_held`."""
        if (node.lookups and not kernel_held) or node.opens or node.jid is not None or node.generation:
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

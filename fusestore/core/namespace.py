"""The tree of nodes, and how store listings and the journal are merged into it.

The namespace owns three facts that keep local changes and store listings apart:
keys still to delete from the store, objects still needed as the source of a move
(`moving_from`), and the prefixes above either (a listing must not resurrect them).
Everything here is synchronous and runs on the trio thread.
"""

from __future__ import annotations

import errno
import logging
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..cache import Journal
from ..stores import ObjectInfo, PosixAttrs
from ..stores.posix import carries_other_names
from ..writeback.conditions import PROBE_PREFIX
from ..writeback.conflicts import ConflictNames
from .errors import fs_error
from .nodes import Kind, Node, now_ns, shared, shared_int

log = logging.getLogger(__name__)

#: The longest file name Linux accepts (NAME_MAX).
NAME_MAX = 255


@dataclass(frozen=True)
class Defaults:
    """Attributes for objects and directories that carry none (mount options). A mode
    given for a kind (`file_mode`, `dir_mode`) is taken as it is; the umask only shapes
    the kind no mode was given for."""

    uid: int
    gid: int
    umask: int = 0o022
    file_mode: int | None = None
    dir_mode: int | None = None

    # Worked out once: every listed entry's node refers to the same int.
    @cached_property
    def file_perm(self) -> int:
        return self.file_mode if self.file_mode is not None else 0o666 & ~self.umask

    @cached_property
    def dir_perm(self) -> int:
        return self.dir_mode if self.dir_mode is not None else 0o777 & ~self.umask


def check_name(name: str) -> None:
    """ENAMETOOLONG or EINVAL for a name a new entry may not take."""
    if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise fs_error(errno.ENAMETOOLONG)
    if "/" in name or name in ("", ".", ".."):
        raise fs_error(errno.EINVAL)


def bad_name_reason(name: str) -> str | None:
    """Why `name` (one component of a key) cannot be a file name here; None when it can."""
    if name in ("", ".", ".."):
        return "empty, '.' or '..' name"
    if "\x00" in name:
        return "NUL byte in the name"
    try:
        if len(name.encode("utf-8")) > NAME_MAX:
            return f"name longer than {NAME_MAX} bytes"
    except UnicodeEncodeError:
        return "name is not valid UTF-8"
    return None


@dataclass(slots=True, eq=False)
class ListingMerge:
    """A listing of one directory merged page by page (`Namespace.merge_page`), then
    finished (`Namespace.finish_merge`): what its pages showed so far.

    `since` is the `store_seq` when the listing was asked for."""

    directory: Node
    prefix: str
    since: int
    #: every name the pages showed, merged or hidden by local work: none is absent
    seen: set[str] = field(default_factory=set)
    #: the names among them that local work hides (they say nothing of local children)
    shadowed: set[str] = field(default_factory=set)
    #: keys that cannot be shown (bad names, an object that is also a prefix)
    hidden: int = 0
    #: conflict copies listed
    copies: set[str] = field(default_factory=set)


class Namespace:
    """Inodes by number, the tree below the root, and the bookkeeping of pending moves."""

    def __init__(self, defaults: Defaults, journal: Journal, meta_index: Any) -> None:
        self.defaults = defaults
        self.journal = journal
        self.meta_index = meta_index  # diskcache: ("meta", key) -> (etag, metadata)
        self.nodes: dict[int, Node] = {}
        self._next_ino = 2
        self._clock_read = float("-inf")
        self.root = Node(1, Kind.DIR, "", None, defaults.dir_perm, defaults.uid, defaults.gid, now_ns())
        self.root.children = {}
        self.root.lookups = 1
        self.nodes[1] = self.root
        #: keys to delete -> the etag of the version to delete (None: whatever is there)
        self.deletes: dict[str, str | None] = {}
        #: how many keys `add_delete` was ever given (the flusher gathers deletes by it)
        self.deletes_added = 0
        #: keys the flusher is writing or deleting right now (shared with it): a listing
        #: taken meanwhile may show an object whose node was removed since
        self.writing: set[str] = set()
        self.moving_from: dict[str, Node] = {}
        #: keys that may hold an upload of ours whose answer never came (`landings`)
        self.hidden_keys: Counter[str] = Counter()
        self._shadowed_prefixes: Counter[str] = Counter()
        self._warned: set[str] = set()
        #: directory prefix -> number of keys below it that could not be shown
        self.hidden: Counter[str] = Counter()
        #: bumped whenever the flusher changes the store; a listing knows which it predates
        self.store_seq = 0
        #: keys deleted recently, by store_seq, while a listing that may predate it runs
        self.recent_deletes: dict[str, int] = {}
        #: the prefixes above those keys, by the store_seq of the latest delete below each:
        #: a listing that predates it may show a directory only for keys gone since
        self.recent_deletes_below: dict[str, int] = {}
        self._listings = 0
        #: told of each directory a listing's page was merged into, whichever request
        #: loaded it (the filesystem binds it to `Compaction.loaded`)
        self.entries_loaded: Callable[[Node], None] = lambda directory: None
        #: objects (key, etag) whose clean cached data is worthless now: another client
        #: replaced or deleted them (the filesystem drops the data and empties this)
        self.stale_objects: list[tuple[str, str]] = []
        #: names (directory inode, name) the kernel knows but that now lead elsewhere or
        #: nowhere (the filesystem tells the kernel and empties this)
        self.stale_names: list[tuple[int, str]] = []
        #: how conflict copies are named; and the copies the last listing of each
        #: directory showed (made here or by other hosts), by directory prefix
        self.conflict_names = ConflictNames()
        self.conflict_copies: dict[str, set[str]] = {}

    def listing_started(self) -> int:
        self._listings += 1
        return self.store_seq

    def listing_ended(self) -> None:
        self._listings -= 1
        if not self._listings:
            self.recent_deletes.clear()
            self.recent_deletes_below.clear()

    def store_changed(self, node: Node | None = None, deleted: str | None = None) -> None:
        """The flusher wrote `node` or deleted `deleted`: listings begun before are stale there."""
        self.store_seq += 1
        if node is not None:
            node.synced_seq = self.store_seq
        if deleted is not None and self._listings:
            self.recent_deletes[deleted] = self.store_seq
            parts = deleted.rstrip("/").split("/")
            for depth in range(1, len(parts)):
                self.recent_deletes_below["/".join(parts[:depth]) + "/"] = self.store_seq

    # -- nodes ----------------------------------------------------------------------

    def new_node(
        self, kind: Kind, name: str, parent: Node, perm: int, uid: int, gid: int, mtime_ns: int
    ) -> Node:
        node = Node(self._next_ino, kind, name, parent, perm, uid, gid, mtime_ns)
        self._next_ino += 1
        if kind is Kind.DIR:
            node.children = {}
        self.nodes[node.ino] = node
        return node

    def attach(self, parent: Node, name: str, node: Node) -> None:
        assert parent.children is not None
        node.parent, node.name, node.attached = parent, name, True
        node.checked_at = self._clock()
        parent.children[name] = node

    def _clock(self) -> float:
        """`time.monotonic()`, the same float object for the nodes of one listing page (a
        float of its own is 24 bytes a node): at most a millisecond early, never late."""
        now = time.monotonic()
        if now - self._clock_read > 0.001:
            self._clock_read = now
        return self._clock_read

    def detach(self, node: Node) -> None:
        """Take a node out of the tree (unlink, rmdir, replaced by a rename)."""
        parent = node.parent
        if parent is not None and parent.children is not None and parent.children.get(node.name) is node:
            del parent.children[node.name]
        node.attached = False

    def node_at(self, key: str) -> Node | None:
        """The loaded, linked node whose key is `key` (no trailing slash), if any."""
        node = self.root
        for name in key.split("/") if key else []:
            child = node.children.get(name) if node.children is not None else None
            if child is None:
                return None
            node = child
        return node

    def let_go(self, node: Node) -> None:
        """The store no longer holds what `node` (a clean file or symlink, or a directory
        with no local work below it) showed: another client deleted or replaced it.

        The node and everything below it leave the tree. The objects they were based on
        are forgotten, never deleted (the key is another client's now); open handles go
        on reading what is cached of the version they opened.
        """
        parent = node.parent
        self.detach(node)
        if node.lookups and parent is not None:
            self.stale_names.append((parent.ino, node.name))
        for sub in node.walk():
            sub.attached = False
            if sub.is_dir:
                self.conflict_copies.pop(sub.prefix, None)
            if sub.remote_key is not None and sub.etag is not None:
                self.stale_objects.append((sub.remote_key, sub.etag))
            self.release_remote(sub)
            self.maybe_free(sub)

    def replace_with_object(self, node: Node, info: ObjectInfo, *, listed: bool = False) -> Node:
        """Another client changed the object behind clean `node`: a new node shows it.

        A new node, with a new inode number, because with the writeback cache the kernel
        trusts its own size of a cached inode over ours, and keeps that inode's pages: only
        a new inode shows the other version whole. Handles open on `node` keep the version
        they opened (see `let_go`).
        """
        parent, name = node.parent, node.name
        assert parent is not None
        self.let_go(node)
        fresh = self.node_from_object(parent, name, info, listed=listed)
        self.attach(parent, name, fresh)
        return fresh

    def maybe_free(self, node: Node) -> bool:
        """Drop an unlinked node the kernel and every handle have let go of."""
        if node.attached or node.lookups > 0 or node.opens > 0 or node.ino == 1:
            return False
        self.nodes.pop(node.ino, None)
        return True

    # -- what the store still has to do -----------------------------------------------

    def _shadow(self, key: str, step: int) -> None:
        parts = key.rstrip("/").split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth]) + "/"
            self._shadowed_prefixes[prefix] += step
            if self._shadowed_prefixes[prefix] <= 0:
                del self._shadowed_prefixes[prefix]

    def shadowed(self, key: str) -> bool:
        """Whether a listed key or prefix (`dir/`) is one we removed or moved away locally."""
        if key in self.deletes or key in self.moving_from or key in self.hidden_keys:
            return True
        return key.endswith("/") and self._shadowed_prefixes.get(key, 0) > 0

    def hide(self, key: str, step: int) -> None:
        """Hide `key` from listings (step +1) until each hiding is undone (-1).

        Only the key: the directories above it may hold other objects, and a listing that
        left them out would report names that exist as absent (and be kept for the TTL)."""
        self.hidden_keys[key] += step
        if self.hidden_keys[key] <= 0:
            del self.hidden_keys[key]

    def add_delete(self, key: str, etag: str | None = None) -> None:
        """The store must lose `key` (the caller knows nothing local is to be written there):
        the version `etag` of it (another client's newer one stays), or whatever is there
        (None). Given again, the newest word counts."""
        if key not in self.deletes:
            self.deletes[key] = etag
            self.deletes_added += 1
            self.journal.add_delete(key, etag)
            self._shadow(key, +1)
        elif self.deletes[key] != etag:
            self.deletes[key] = etag
            self.journal.add_delete(key, etag)

    def drop_delete(self, key: str) -> bool:
        """Cancel a pending delete of `key`; returns whether there was one."""
        if key not in self.deletes:
            return False
        del self.deletes[key]
        self.journal.drop_delete(key)
        self._shadow(key, -1)
        return True

    def track_move(self, node: Node) -> None:
        """Keep `moving_from` true for `node`: its object (a directory's: its marker) must
        stay until it is copied away."""
        key = node.source_key
        if key is None:
            return
        needed = (node.attached and node.object_key != key) or (not node.attached and node.opens > 0)
        owner = self.moving_from.get(key)
        if needed and owner is not node:
            if owner is None:
                self._shadow(key, +1)
            self.moving_from[key] = node
        elif not needed and owner is node:
            del self.moving_from[key]
            self._shadow(key, -1)

    def release_remote(self, node: Node) -> str | None:
        """Forget the object `node` was based on (a directory's: its marker); returns its
        key for the caller to delete."""
        key = node.source_key
        if key is None:
            return None
        if self.moving_from.get(key) is node:
            del self.moving_from[key]
            self._shadow(key, -1)
        if node.is_dir:
            node.marker_key = None
        else:
            node.remote_key = None
            node.etag = None
        return key

    # -- listings ---------------------------------------------------------------------

    def warn_once(self, key: str, reason: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("skipping object %r: %s (it stays in the store, untouched)", key, reason)

    def node_from_object(self, parent: Node, name: str, info: ObjectInfo, *, listed: bool = False) -> Node:
        """A clean file or symlink node for a listed or HEADed object."""
        node = self.new_node(
            Kind.FILE,
            name,
            parent,
            self.defaults.file_perm,
            self.defaults.uid,
            self.defaults.gid,
            int(info.mtime * 1e9),
        )
        self.apply_object(node, info, listed=listed)
        return node

    def _listed_file(self, directory: Node, name: str, info: ObjectInfo, remote_dir: str) -> Node:
        """`node_from_object` of a listed object at `remote_dir` + `name`. One that carries
        no attributes (most: another program's, or a listing without metadata, as S3's) is
        made here in one go: at a third of the cost, a tenth of a cold walk's time."""
        metadata = self._known_metadata(info)
        if metadata:
            return self.node_from_object(directory, name, info, listed=True)
        defaults = self.defaults
        node = self.new_node(
            Kind.FILE, name, directory, defaults.file_perm, defaults.uid, defaults.gid, int(info.mtime * 1e9)
        )
        node.size = node.remote_size = info.size
        node.set_remote(remote_dir, name)
        node.etag = info.etag
        node.attrs_guessed = metadata is None
        return node

    def _known_metadata(self, info: ObjectInfo) -> Mapping[str, Any] | None:
        """The object's metadata: what the store said, else what this cache read of that
        version (everything it wrote or HEADed); None when neither knows it."""
        if info.metadata is not None:
            return info.metadata
        cached = self.meta_index.get(("meta", info.key))
        return cached[1] if cached is not None and cached[0] == info.etag else None

    @staticmethod
    def _object_kind(attrs: PosixAttrs) -> Kind:
        """A non-directory object's kind, as its mode says: a file when it says nothing."""
        return (Kind.of_mode(attrs.mode) if attrs.mode is not None else None) or Kind.FILE

    def stored_metadata(self, node: Node) -> dict[str, Any] | None:
        """The metadata of the object `node` is based on, when this cache read it."""
        if node.remote_key is None or node.etag is None:
            return None
        cached = self.meta_index.get(("meta", node.remote_key))
        return dict(cached[1]) if cached is not None and cached[0] == node.etag else None

    def kind_of(self, info: ObjectInfo) -> Kind:
        """What an object HEADed (or listed with metadata) is: a file, a symlink, a FIFO, a
        socket or a device (its mode says; a file when it says nothing valid)."""
        return self._object_kind(PosixAttrs.from_metadata(info.metadata, size=info.size))

    def apply_object(self, node: Node, info: ObjectInfo, *, listed: bool = False) -> None:
        """Take size, etag and (where known) POSIX attributes from the store's view
        (`listed`: a listing's, rather than a HEAD's or an upload's)."""
        metadata = self._known_metadata(info)
        if info.metadata is not None and (not listed or carries_other_names(info.metadata)):
            # A HEAD's metadata spares the next HEAD (S3 listings carry none). A listing
            # that carries metadata brings fusestore's own names again next time: only
            # another tool's, which a chmod or rename copies (`stored_metadata`), are kept.
            # A write per listed object cost more than the rest of a cold walk.
            self.meta_index.set(("meta", info.key), (info.etag, dict(info.metadata)))
        attrs = PosixAttrs.from_metadata(metadata, size=info.size)
        node.kind = self._object_kind(attrs)
        node.rdev = attrs.rdev or 0
        defaults = self.defaults
        node.perm = shared_int(stat.S_IMODE(attrs.mode)) if attrs.mode is not None else defaults.file_perm
        node.uid = shared_int(attrs.uid) if attrs.uid is not None else self.defaults.uid
        node.gid = shared_int(attrs.gid) if attrs.gid is not None else self.defaults.gid
        mtime_ns = attrs.mtime_ns if attrs.mtime_ns is not None else int(info.mtime * 1e9)
        if mtime_ns != node.mtime_ns:  # else keep the int the node has (its ctime's too)
            node.mtime_ns = mtime_ns
        node.take_attrs(attrs)
        node.size = node.remote_size = info.size
        node.remote_key, node.etag = info.key, info.etag
        node.attrs_guessed = metadata is None
        if node.kind is Kind.SYMLINK:
            node.target = ""  # read on demand

    def _guess_dir_attrs(self, node: Node, marker: str) -> None:
        """A listed prefix: attributes from a marker we know, else to be read on lookup."""
        cached = self.meta_index.get(("meta", marker))
        if cached is not None:
            self.apply_marker(node, ObjectInfo(marker, 0, cached[0], 0.0, cached[1]))
        else:
            node.attrs_guessed = True

    def apply_marker(self, node: Node, info: ObjectInfo) -> None:
        """The store holds the marker `info` for the directory `node` (listed, HEADed, or
        remembered by the cache). One this mount did not write makes the directory
        explicit: it is kept, since it may hold attributes or another tool's intent, and
        only a change made here (rmdir, rename, new attributes) writes or deletes it. Its
        attributes are shown where known, else its Last-Modified as the mtime."""
        moving = node.marker_key is not None and self.moving_from.get(node.marker_key) is node
        if moving and node.marker_key != info.key:
            return  # its own marker is still to be copied here, over the one listed
        if node.marker_key != info.key:
            node.marker_key = info.key
            node.explicit = True
        metadata = info.metadata
        if metadata is not None:
            self.meta_index.set(("meta", info.key), (info.etag, dict(metadata)))
        else:
            cached = self.meta_index.get(("meta", info.key))
            metadata = cached[1] if cached is not None and cached[0] == info.etag else None
        if node.meta_dirty:
            return
        node.attrs_guessed = metadata is None
        if metadata is None:
            if info.mtime:
                node.mtime_ns = node.ctime_ns = int(info.mtime * 1e9)
        else:
            attrs = PosixAttrs.from_metadata(metadata, directory=True)
            if attrs.mode is not None:
                node.perm = stat.S_IMODE(attrs.mode)
            if attrs.uid is not None:
                node.uid = attrs.uid
            if attrs.gid is not None:
                node.gid = attrs.gid
            if attrs.mtime_ns is not None:
                node.mtime_ns = attrs.mtime_ns
            node.take_attrs(attrs)
        # Entries made or removed here after the marker's last change set the times, and
        # the marker is not rewritten for that: they do not go back to the marker's.
        changed = node.entries_changed_ns
        if changed > node.ctime_ns:
            node.mtime_ns = node.ctime_ns = changed

    def merge_listing(
        self, directory: Node, objects: Iterable[ObjectInfo], prefixes: Iterable[str], since: int = -1
    ) -> None:
        """Make `directory`'s children agree with a complete listing of its prefix,
        keeping every local change the store does not have yet.

        `since` is the `store_seq` when the listing was asked for: what the flusher wrote
        or deleted after that is newer than the listing and wins over it.
        """
        merge = ListingMerge(directory, directory.prefix, self.store_seq if since < 0 else since)
        self.merge_page(merge, objects, prefixes)
        self.finish_merge(merge)

    def merge_page(
        self, merge: ListingMerge, objects: Iterable[ObjectInfo], prefixes: Iterable[str]
    ) -> list[str]:
        """Merge one page of a listing, additively: its entries are added, or replace
        clean nodes of another version or type; nothing absent from it goes (that waits
        for `finish_merge`). Returns the names it showed that no earlier page did (local
        work may hide some: they need not be children)."""
        directory, prefix, since = merge.directory, merge.prefix, merge.since
        children = directory.children
        assert children is not None
        listed: dict[str, ObjectInfo | str] = {}
        #: names the listing shows but local work hides; they say nothing about local children
        shadowed: set[str] = set()
        hidden = 0
        for info in objects:
            name = info.key[len(prefix) :]
            if name == "":
                if info.size:
                    # Bytes in the `dir/` object itself: data the mount cannot show, which
                    # keeps the directory from being empty (an rmdir would delete it).
                    hidden += 1
                # Not a marker this mount deleted or wrote since the listing was asked for.
                if (
                    not self.shadowed(info.key)
                    and info.key not in self.writing
                    and self.recent_deletes.get(info.key, -1) <= since
                    and directory.synced_seq <= since
                ):
                    self.apply_marker(directory, info)
                continue
            if not prefix and name.startswith(PROBE_PREFIX):
                continue  # another mount's probe of the store, gone in a moment
            reason = bad_name_reason(name)
            if reason is not None:
                self.warn_once(info.key, reason)
                hidden += 1
            elif (
                not self.shadowed(info.key)
                and info.key not in self.writing
                and self.recent_deletes.get(info.key, -1) <= since
            ):
                listed[name] = info
            else:
                shadowed.add(name)
        for sub in prefixes:
            name = sub[len(prefix) : -1]
            reason = bad_name_reason(name)
            if reason is not None:
                self.warn_once(sub, reason)
                hidden += 1
                continue
            if (
                self.shadowed(sub)
                or sub in self.writing
                or self.recent_deletes.get(sub, -1) > since
                # The listing may show `sub` only for keys this mount deleted after it was
                # asked for (a directory renamed or removed here): it tells nothing of `sub`.
                or self.recent_deletes_below.get(sub, -1) > since
            ):
                shadowed.add(name)
                continue
            # An object sorts before a prefix of the same name ("a" < "a-1" < "a/"): an
            # earlier page may have shown it.
            if isinstance(listed.get(name), ObjectInfo) or (
                name in merge.seen and name not in merge.shadowed
            ):
                # A key that is both an object and a prefix: the directory wins.
                self.warn_once(prefix + name, "it is also a directory of other objects")
                hidden += 1
            listed[name] = sub
        merge.hidden += hidden
        merge.copies.update(
            name
            for name, entry in listed.items()
            if not isinstance(entry, str) and self.conflict_names.is_copy(name)
        )

        remote_dir = shared(prefix)
        for name, entry in listed.items():
            existing = children.get(name)
            if (
                existing is not None
                and isinstance(entry, str) != existing.is_dir
                and not self.has_local_work(existing)
            ):
                # Another client replaced a file by a directory, or the other way round.
                self.let_go(existing)
                existing = None
            if existing is None:
                if isinstance(entry, str):
                    node = self.new_node(
                        Kind.DIR,
                        name,
                        directory,
                        self.defaults.dir_perm,
                        self.defaults.uid,
                        self.defaults.gid,
                        now_ns(),
                    )
                    self._guess_dir_attrs(node, entry)
                else:
                    node = self._listed_file(directory, name, entry, remote_dir)
                self.attach(directory, name, node)
            elif (
                isinstance(entry, ObjectInfo)
                and not existing.is_dir
                and existing.etag != entry.etag
                and not existing.pending
                and not existing.writers
                and existing.synced_seq <= since  # else the flusher wrote ours after the listing
            ):
                self.replace_with_object(existing, entry, listed=True)
        seen = merge.seen
        new = [name for name in listed if name not in seen]
        new += [name for name in shadowed if name not in seen and name not in listed]
        seen.update(new)
        merge.shadowed |= shadowed
        self.entries_loaded(directory)
        return new

    def finish_merge(self, merge: ListingMerge) -> None:
        """The listing `merge` took every page: what it did not show, and the store once
        held, is gone, unless local work keeps it (or the flusher wrote it after the
        listing was asked for). The directory counts as listed from now."""
        directory, prefix, since = merge.directory, merge.prefix, merge.since
        assert directory.children is not None
        self.hidden[prefix] = merge.hidden
        if merge.copies:
            self.conflict_copies[prefix] = merge.copies
        else:
            self.conflict_copies.pop(prefix, None)
        seen = merge.seen
        for name, child in list(directory.children.items()):
            if name in seen:
                continue  # listed, or hidden by local work (a file still open after unlink...)
            if (
                self._came_from_store(child)
                and not self.has_local_work(child)
                and not any(sub.synced_seq > since for sub in child.walk())
            ):
                self.let_go(child)
        directory.listed_at = time.monotonic()

    @staticmethod
    def _came_from_store(node: Node) -> bool:
        """Whether the store once held this node (so its absence from a listing means it went).

        Directories made here carry a journal record until the store has them, which
        `has_local_work` sees.
        """
        return node.is_dir or (node.remote_key is not None and node.remote_key == node.key)

    @staticmethod
    def has_local_work(node: Node, *, readers: bool = False) -> bool:
        """Whether anything at or below `node` is not in the store yet, or open for
        writing (or, with `readers`, open at all). Another client's change does not replace
        such a node: a writer's upload meets the conflict rule, while handles that only
        read go on with the version they opened."""
        return any(
            sub.pending or sub.jid is not None or (sub.opens if readers else sub.writers)
            for sub in node.walk()
        )

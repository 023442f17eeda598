"""Inodes: what the filesystem knows about one file, symlink or directory.

A node's key is derived from its place in the tree (`parent` chain and `name`), so a
rename moves a whole subtree by relinking one node. What the store holds for a node is
tracked separately (`remote_key`, `etag`, `marker_key`): the two differ exactly while
the flusher still has work to do for it.
"""

from __future__ import annotations

import enum
import stat
import time
from dataclasses import dataclass, field
from typing import Any

from ..cache import Content
from ..stores import PosixAttrs


class Kind(enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"

    @property
    def type_bits(self) -> int:
        return _TYPE_BITS[self._value_]  # asked once per entry the kernel is told of


_TYPE_BITS = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}


def now_ns() -> int:
    return time.time_ns()


@dataclass(eq=False, slots=True)
class Node:
    """One inode. Identity is the object itself (`ino` is unique for the daemon's life).
    Slots, not a per-node dict: a mount holds one per entry the kernel or a listing knows."""

    ino: int
    kind: Kind
    name: str
    parent: Node | None
    perm: int
    uid: int
    gid: int
    mtime_ns: int
    ctime_ns: int = field(default_factory=now_ns)
    size: int = 0
    #: kernel lookup count (lookup, create, mkdir, symlink, readdirplus entries)
    lookups: int = 0
    #: open file handles, and how many of them may write
    opens: int = 0
    writers: int = 0
    #: still in the tree: False once unlinked or replaced (an open file lives on detached)
    attached: bool = True
    #: when (monotonic) the store last confirmed this node (a HEAD, or its creation
    #: here); its parent's listing confirms it too (see `Filesystem.entry_timeout`)
    checked_at: float = float("-inf")

    # directories
    children: dict[str, Node] | None = None  # None until listed
    listed_at: float = float("-inf")
    #: a `dir/` marker is kept for it: its attributes were set here, or the store held a
    #: marker this mount did not write (see `Namespace.apply_marker`)
    explicit: bool = False
    marker_key: str | None = None  # the `dir/` marker object the store holds for it

    # files and symlinks
    remote_key: str | None = None  # where the store holds the object this node is based on
    etag: str | None = None
    remote_size: int = 0
    #: a key whose older object this node's next upload replaces (its delete was dropped when
    #: the node took the name); deleted after all if the node leaves that key first
    overwrites: str | None = None
    content: Content | None = None
    data_dirty: bool = False
    target: str = ""  # symlink target
    #: attributes came from a listing without metadata (S3): mode/owner are defaults
    attrs_guessed: bool = False
    #: told to the kernel with the inode number: a new one makes the kernel drop the
    #: inode it caches (its size and pages) at the next lookup (see `_lost_write`)
    generation: int = 0

    # pending work
    meta_dirty: bool = False
    version: int = 0  # bumped by every local change; uploads compare it
    data_version: int = 0  # bumped by every local change of the data (within `version`)
    jid: str | None = None  # journal record id while there is pending work
    journaled: dict[str, Any] | None = field(default=None, repr=False)  # the record last written
    synced_seq: int = 0  # the namespace's store_seq when the flusher last wrote it

    @property
    def is_dir(self) -> bool:
        return self.kind is Kind.DIR

    @property
    def mode(self) -> int:
        return self.kind.type_bits | self.perm

    @property
    def key(self) -> str:
        """The object key of this node (without a trailing slash for directories)."""
        names = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            names.append(node.name)
            node = node.parent
        return "/".join(reversed(names))

    @property
    def prefix(self) -> str:
        """The key prefix of a directory's entries: `dir/`, or `` at the root."""
        key = self.key
        return f"{key}/" if key else ""

    @property
    def object_key(self) -> str:
        """The key the store holds this node at: its key, or its `dir/` marker's."""
        return self.prefix if self.is_dir else self.key

    @property
    def source_key(self) -> str | None:
        """The object this node is based on (a file's, or a directory's marker): while it
        is not at `object_key`, the source of the move that copies it there."""
        return self.marker_key if self.is_dir else self.remote_key

    def path(self) -> str:
        return "/" + self.key

    def is_ancestor_of(self, other: Node) -> bool:
        node: Node | None = other
        while node is not None:
            if node is self:
                return True
            node = node.parent
        return False

    def posix_attrs(self) -> PosixAttrs:
        return PosixAttrs(mode=self.mode, uid=self.uid, gid=self.gid, mtime_ns=self.mtime_ns)

    @property
    def pending(self) -> bool:
        """Whether the store does not yet hold what this file or symlink is."""
        if self.is_dir or not self.attached:
            return False
        return self.data_dirty or self.meta_dirty or self.remote_key != self.key or self.remote_key is None

    def walk(self) -> list[Node]:
        """This node and every loaded node below it."""
        found = [self]
        index = 0
        while index < len(found):
            node = found[index]
            if node.children:
                found.extend(node.children.values())
            index += 1
        return found

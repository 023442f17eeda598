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
from typing import Any, Generic, TypeVar, overload

from ..cache import Content
from ..stores import PosixAttrs


class Kind(enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    #: special files: an empty object whose mode carries the type (and `rdev` a device's number)
    FIFO = "fifo"
    SOCKET = "socket"
    CHAR_DEVICE = "chardev"
    BLOCK_DEVICE = "blockdev"

    @property
    def type_bits(self) -> int:
        return _TYPE_BITS[self._value_]  # asked once per entry the kernel is told of

    @property
    def special(self) -> bool:
        """A FIFO, socket or device: no data, never opened through the mount (the kernel
        serves a FIFO's or socket's I/O itself, and the mount is `nodev`)."""
        return self._value_ in _SPECIAL

    @staticmethod
    def of_mode(mode: int) -> Kind | None:
        """The kind of a non-directory object whose st_mode is `mode`: a file when the
        mode holds no type bits; None for a directory's or an unknown type."""
        return _KIND_OF_BITS.get(stat.S_IFMT(mode) or stat.S_IFREG)


_TYPE_BITS = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "fifo": stat.S_IFIFO,
    "socket": stat.S_IFSOCK,
    "chardev": stat.S_IFCHR,
    "blockdev": stat.S_IFBLK,
}
_SPECIAL = frozenset(("fifo", "socket", "chardev", "blockdev"))
_KIND_OF_BITS = {bits: Kind(value) for value, bits in _TYPE_BITS.items() if value != "dir"}


def now_ns() -> int:
    return time.time_ns()


V = TypeVar("V", str, int)


class SharedValues(Generic[V]):
    """Equal values as one object for every caller while remembered, so that a million
    nodes hold one copy (bounded: sharing is a saving, never a promise)."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._kept: dict[V, V] = {}

    def __call__(self, value: V) -> V:
        kept = self._kept.get(value)
        if kept is not None:
            return kept
        if len(self._kept) >= self.limit:
            self._kept.clear()
        self._kept[value] = value
        return value

    def clear(self) -> None:
        """Forget every value (the nodes keep theirs): after many nodes were dropped, so
        that none outlives them, holding the memory it sits in."""
        self._kept.clear()


#: the key prefixes of directories' entries (the first part of each node's `remote_key`)
shared = SharedValues[str]()
#: modes and owners: an int above 256 (which Python does not share) is 28 bytes a node
shared_int = SharedValues[int]()


class _Rare:
    """A node's fields that most nodes never set (clean listed files: none of them), in
    one object made at the first write of one: open counts, pending work, the journal
    record, a directory's entries, a symlink's target."""

    __slots__ = (
        "atime_ns",
        "children",
        "content",
        "data_dirty",
        "data_version",
        "entries_changed_ns",
        "explicit",
        "generation",
        "jid",
        "journaled",
        "listed_at",
        "marker_key",
        "meta_dirty",
        "opens",
        "overwrites",
        "rdev",
        "synced_seq",
        "target",
        "version",
        "writers",
        "xattrs",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, _RARE_DEFAULTS[name])


_RARE_DEFAULTS: dict[str, Any] = {}

#: the MD5 of no bytes: the etag of every empty object on S3
_EMPTY_MD5 = 0xD41D8CD98F00B204E9800998ECF8427E

T = TypeVar("T")


class _RareField(Generic[T]):
    """A `Node` attribute kept in its `_Rare` part: reads the default while there is none,
    and a write of the default makes none."""

    def __init__(self, default: T) -> None:
        self.default = default

    def __set_name__(self, owner: type, name: str) -> None:
        _RARE_DEFAULTS[name] = self.default
        self.slot = _Rare.__dict__[name]

    @overload
    def __get__(self, node: None, owner: type | None = None) -> _RareField[T]: ...
    @overload
    def __get__(self, node: Node, owner: type | None = None) -> T: ...
    def __get__(self, node: Node | None, owner: type | None = None) -> T | _RareField[T]:
        if node is None:
            return self
        rare = node._rare
        return self.default if rare is None else self.slot.__get__(rare)

    def __set__(self, node: Node, value: T) -> None:
        rare = node._rare
        if rare is None:
            if value is self.default or value == self.default:
                return
            rare = node._rare = _Rare()
        self.slot.__set__(rare, value)


class Node:
    """One inode. Identity is the object itself (`ino` is unique for the daemon's life).

    Slots, not a per-node dict, and the fields most nodes never set in a part made on
    their first write (`_Rare`): a mount holds one node per entry the kernel or a listing
    knows, a clean listed file costs 19 slots. `remote_key` is kept as its directory's
    prefix (shared) and the node's name when it ends in the name, not as a string of its
    own; it reads back exactly as set, whatever becomes of the node's name later. So does
    `etag`, kept as a number when it is an MD5's."""

    __slots__ = (
        "_etag",
        "_rare",
        "_remote_dir",
        "_remote_name",
        "attached",
        "attrs_guessed",
        "checked_at",
        "ctime_ns",
        "gid",
        "ino",
        "kind",
        "lookups",
        "mtime_ns",
        "name",
        "parent",
        "perm",
        "remote_size",
        "size",
        "uid",
    )

    def __init__(
        self,
        ino: int,
        kind: Kind,
        name: str,
        parent: Node | None,
        perm: int,
        uid: int,
        gid: int,
        mtime_ns: int,
        ctime_ns: int | None = None,
        size: int = 0,
    ) -> None:
        self.ino = ino
        self.kind = kind
        self.name = name
        self.parent = parent
        self.perm = perm
        self.uid = uid
        self.gid = gid
        self.mtime_ns = mtime_ns
        #: a new node's change time is its mtime (the same int: nothing more to keep)
        self.ctime_ns = mtime_ns if ctime_ns is None else ctime_ns
        self.size = size
        #: kernel lookup count (lookup, create, mkdir, symlink, readdirplus entries)
        self.lookups = 0
        #: still in the tree: False once unlinked or replaced (an open file lives on detached)
        self.attached = True
        #: when (monotonic) the store last confirmed this node (a HEAD, or its creation
        #: here); its parent's listing confirms it too (see `Filesystem.entry_timeout`)
        self.checked_at = float("-inf")
        self._remote_dir: str | None = None
        self._remote_name: str | None = None
        self._etag: str | bytes | int | None = None
        self.remote_size = 0
        #: attributes came from a listing without metadata (S3): mode/owner are defaults
        self.attrs_guessed = False
        self._rare: _Rare | None = None

    def __repr__(self) -> str:
        return f"Node({self.ino}, {self.kind.name}, {self.name!r})"

    #: open file handles, and how many of them may write
    opens = _RareField(0)
    writers = _RareField(0)

    # directories
    children: _RareField[dict[str, Node] | None] = _RareField(None)  # None until listed
    listed_at = _RareField(float("-inf"))
    #: a `dir/` marker is kept for it: its attributes were set here, or the store held a
    #: marker this mount did not write (see `Namespace.apply_marker`)
    explicit = _RareField(False)
    #: a directory's: when (ns) an entry was last made or removed here; its marker may be
    #: older, and a listing of that marker does not take its times back before this
    entries_changed_ns = _RareField(0)
    marker_key: _RareField[str | None] = _RareField(None)  # the `dir/` marker the store holds

    # files and symlinks
    #: a key whose older object this node's next upload replaces (its delete was dropped when
    #: the node took the name); deleted after all if the node leaves that key first
    overwrites: _RareField[str | None] = _RareField(None)
    content: _RareField[Content | None] = _RareField(None)
    data_dirty = _RareField(False)
    target = _RareField("")  # symlink target
    rdev = _RareField(0)  # a device's number (st_rdev)

    # every kind
    #: the access time, when it is not the mtime (set only by utimensat: the mount is
    #: noatime; a change of the mtime alone keeps it)
    atime_ns: _RareField[int | None] = _RareField(None)
    #: extended attributes by name (user.* and any other name another tool stored)
    xattrs: _RareField[dict[str, bytes] | None] = _RareField(None)
    #: told to the kernel with the inode number: a new one makes the kernel drop the
    #: inode it caches (its size and pages) at the next lookup (see `_lost_write`)
    generation = _RareField(0)

    # pending work
    meta_dirty = _RareField(False)
    version = _RareField(0)  # bumped by every local change; uploads compare it
    data_version = _RareField(0)  # bumped by every local change of the data (within `version`)
    jid: _RareField[str | None] = _RareField(None)  # journal record id while there is pending work
    #: the record last written
    journaled: _RareField[dict[str, Any] | None] = _RareField(None)
    synced_seq = _RareField(0)  # the namespace's store_seq when the flusher last wrote it

    @property
    def etag(self) -> str | None:
        """The etag of the object this node is based on. An MD5's (`"<32 hex digits>"`,
        as S3 and most stores give) is kept as a number: 44 bytes, not 83; any other
        ASCII one as bytes (16 bytes less than a string)."""
        etag = self._etag
        if type(etag) is int:
            return f'"{etag:032x}"'
        return etag.decode("ascii") if type(etag) is bytes else etag  # type: ignore[return-value]

    @etag.setter
    def etag(self, etag: str | None) -> None:
        if etag is not None and len(etag) == 34 and etag[0] == '"' == etag[-1]:
            try:
                number = int(etag[1:-1], 16)
            except ValueError:
                number = -1
            if number >= 0 and f'"{number:032x}"' == etag:
                # (every empty object's is the same: one number for all of them)
                self._etag = _EMPTY_MD5 if number == _EMPTY_MD5 else number
                return
        self._etag = etag.encode("ascii") if etag is not None and etag.isascii() else etag

    @property
    def remote_key(self) -> str | None:
        """Where the store holds the object this node is based on."""
        name = self._remote_name
        return self._remote_dir if name is None else f"{self._remote_dir}{name}"

    @remote_key.setter
    def remote_key(self, key: str | None) -> None:
        name = self.name
        if key is not None and name and key.endswith(name) and key[: -len(name)][-1:] in ("/", ""):
            self._remote_dir, self._remote_name = shared(key[: -len(name)]), name
        else:
            self._remote_dir, self._remote_name = key, None

    def set_remote(self, directory_prefix: str, name: str) -> None:
        """`remote_key = directory_prefix + name`, where the caller shares the prefix
        (`shared`) once for many nodes."""
        self._remote_dir, self._remote_name = directory_prefix, name

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

    def longest_key_below(self) -> str:
        """Of the entries below this loaded directory, the path (relative, a directory's
        with its '/') whose key is the longest in bytes; "" when it has none."""
        longest, size = "", 0
        stack: list[tuple[Node, str]] = [(self, "")]
        while stack:
            directory, above = stack.pop()
            for name, child in (directory.children or {}).items():
                path = f"{above}{name}/" if child.is_dir else above + name
                length = len(path.encode())
                if length > size:
                    longest, size = path, length
                if child.is_dir:
                    stack.append((child, path))
        return longest

    def is_ancestor_of(self, other: Node) -> bool:
        node: Node | None = other
        while node is not None:
            if node is self:
                return True
            node = node.parent
        return False

    def kernel_stat(self) -> tuple[int, int, int, int, int, int, int, int, int, int, int]:
        """(st_mode, st_nlink, st_uid, st_gid, st_rdev, st_size, st_blocks, st_atime_ns,
        st_mtime_ns, st_ctime_ns, generation): what the kernel is told of this node, from
        `mode`, `rdev`, `accessed_ns`, `generation` and the content's `stored_or_held`.
        One call for a readdirplus entry: a clean node (most: no `_Rare`) skips the five
        field look-ups whose defaults it holds, a third of a warm walk's time in them."""
        kind = self.kind
        nlink = (2 if kind is Kind.DIR else 1) if self.attached else 0
        mode = _TYPE_BITS[kind._value_] | self.perm
        size = self.size
        mtime_ns = self.mtime_ns
        rare = self._rare
        if rare is None:
            blocks = -(-size // 512)  # the store holds every byte
            return (mode, nlink, self.uid, self.gid, 0, size, blocks, mtime_ns, mtime_ns, self.ctime_ns, 0)
        # What the cache knows of a file's blocks where it has its content (a sparse file
        # not yet uploaded counts its holes as nothing), else the size.
        content = self.content
        held = size if content is None else content.stored_or_held()
        atime_ns = self.atime_ns
        return (
            mode,
            nlink,
            self.uid,
            self.gid,
            self.rdev,
            size,
            -(-held // 512),
            mtime_ns if atime_ns is None else atime_ns,
            mtime_ns,
            self.ctime_ns,
            self.generation,
        )

    @property
    def accessed_ns(self) -> int:
        """st_atime, in nanoseconds."""
        atime = self.atime_ns
        return self.mtime_ns if atime is None else atime

    def modified(self, mtime_ns: int) -> None:
        """A new mtime (a write, a truncation, utimensat): the atime stays as it was."""
        if self.atime_ns is None and mtime_ns != self.mtime_ns:
            self.atime_ns = self.mtime_ns
        self.mtime_ns = mtime_ns

    def xattr_items(self) -> tuple[tuple[str, bytes], ...] | None:
        """The extended attributes by name, as metadata keeps them; None when there are none."""
        xattrs = self.xattrs
        return tuple(sorted(xattrs.items())) if xattrs else None

    def posix_attrs(self) -> PosixAttrs:
        rdev = self.rdev if self.kind in (Kind.CHAR_DEVICE, Kind.BLOCK_DEVICE) else None
        return PosixAttrs(
            mode=self.mode,
            uid=self.uid,
            gid=self.gid,
            mtime_ns=self.mtime_ns,
            rdev=rdev,
            # each written where it is not the mtime, the reader's rule for one missing
            ctime_ns=None if self.ctime_ns == self.mtime_ns else self.ctime_ns,
            atime_ns=self.atime_ns,
            xattrs=self.xattr_items(),
        )

    def take_attrs(self, attrs: PosixAttrs) -> None:
        """The times and extended attributes `attrs` (an object's metadata) hold: the
        ctime its mtime where the metadata holds none."""
        if attrs.ctime_ns is not None:
            self.ctime_ns = attrs.ctime_ns
        elif self.ctime_ns != self.mtime_ns:
            self.ctime_ns = self.mtime_ns
        self.atime_ns = attrs.atime_ns
        self.xattrs = dict(attrs.xattrs) if attrs.xattrs else None

    @property
    def pending(self) -> bool:
        """Whether the store does not yet hold what this file or symlink is."""
        parent = self.parent
        return self.pending_under(parent.prefix if parent is not None else "")

    def pending_under(self, prefix: str) -> bool:
        """`pending`, given the prefix of this node's directory (a readdir works it out
        once for all its entries, rather than a key per entry). The remote key and the key
        are each a prefix ending in '/' (or none) and a name without one: equal exactly
        when both parts are."""
        if self.kind is Kind.DIR or not self.attached:
            return False
        if self._rare is not None and (self.data_dirty or self.meta_dirty):
            return True
        remote_dir, name = self._remote_dir, self._remote_name
        if name is None:  # a key that does not end in the name, or none
            return remote_dir is None or remote_dir != prefix + self.name
        return name != self.name or remote_dir != prefix

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

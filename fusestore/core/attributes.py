"""`Attributes`: a node's attributes changed in place (chmod, chown, utimensat, truncate,
through setattr) and its extended attributes.

Every change here is a change of metadata: the node's next upload writes it (for a file
the store holds already, a copy of its object onto itself) and its ctime becomes now. The
kernel, mounting with `default_permissions`, has checked the caller before a call gets
here: who may chmod, give a file away or change its group, set which times, read or write
which extended attribute. It also clears setuid and setgid itself, on a chown and on a
write, with a setattr of the mode.

Extended attributes: `user.*` names are kept with the object (its `xattr` metadata, as
s3fs keeps them). Other namespaces (`security.*`, `system.posix_acl_*`, `trusted.*`) are
not kept: read, they are absent, at once and without asking the store, so that `ls -l`,
`cp -a` and `rsync -X` cost no round trip per file for them; written, they are refused
with ENOTSUP, which those programs take as "not supported here".
"""

from __future__ import annotations

import errno
import os
import stat

from ..stores.posix import encode_xattrs
from .errors import fs_error
from .filedata import FileData
from .journaling import Journaling
from .linkview import LinkView
from .listings import Listings
from .nodes import Node, now_ns
from .uploadqueue import UploadQueue

#: The names a mount keeps: the user namespace.
KEPT_PREFIX = "user."
#: The most bytes a node's extended attributes take once encoded in its metadata (S3
#: allows 2 KB of user metadata per object; the rest is left to the POSIX attributes).
XATTR_ROOM = 1536


class Attributes:
    """Changes of attributes and extended attributes, on the trio thread. Each `async`
    method may wait for one HEAD first (the attributes a listing did not carry, which the
    upload would otherwise replace with the mount's defaults)."""

    def __init__(
        self,
        linked: LinkView,
        listings: Listings,
        files: FileData,
        journaling: Journaling,
        flusher: UploadQueue,
    ) -> None:
        self.linked = linked
        self.listings = listings
        self.files = files
        self.journaling = journaling
        self.flusher = flusher

    async def for_change(self, node: Node) -> None:
        """Before `node`'s attributes or data change here: read what its object holds,
        since the upload writes every attribute, and one never read would be replaced by
        the mount's defaults. Afterwards the node's attributes are the ones to write, even
        if the store did not answer. Should the HEAD find another client's version, the
        change goes on from the one it was based on, and its upload meets the conflict rule."""
        if node.attrs_guessed:
            await self.listings.head_attrs(node, may_replace=False)
            node.attrs_guessed = False
            self.listings.check_kind(node)

    async def setattr(
        self,
        node: Node,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        size: int | None = None,
        atime_ns: int | None = None,
        mtime_ns: int | None = None,
        ctime_ns: int | None = None,
        fh: int | None = None,
    ) -> Node:
        """Change what is given. A truncation changes the data (see `FileData.truncate`);
        times are taken as given. The ctime becomes `ctime_ns`, the kernel's (it keeps a
        regular file's times itself while it caches writes, and sends them after a write,
        a chmod or a rename), else now."""
        self.linked.writable(node)
        await self.for_change(node)
        if size is not None:
            if node.is_dir:
                raise fs_error(errno.EISDIR)
            await self.files.truncate(node, size, fh)
        if mode is not None:
            node.perm = stat.S_IMODE(mode)
        if uid is not None:
            node.uid = uid
        if gid is not None:
            node.gid = gid
        if mtime_ns is not None:
            node.modified(mtime_ns)
        if atime_ns is not None:
            node.atime_ns = None if atime_ns == node.mtime_ns else atime_ns
        if mode is not None or uid is not None or gid is not None or atime_ns is not None:
            self.meta_changed(node)
        elif mtime_ns is not None:
            # The kernel sends a new mtime with every write it flushes; for a file
            # journaled already, the record waits for its close, fsync or the next
            # persist (within 2 s) rather than costing a transaction each time.
            self.meta_changed(node, journal=size is not None)
        elif ctime_ns is not None and ctime_ns != node.ctime_ns:
            self.meta_changed(node)
        if ctime_ns is not None:
            node.ctime_ns = ctime_ns
        return node

    def meta_changed(self, node: Node, *, journal: bool = True) -> None:
        """`node`'s attributes changed: journaled (see `Journaling.changed`), and written
        to the store with its next upload, or by its marker for a directory."""
        if node.is_dir:
            node.explicit = True  # only a marker keeps a directory's attributes
            node.meta_dirty = True
            node.version += 1  # a marker upload in flight carries the older attributes
            node.ctime_ns = now_ns()
            self.listings.drop_listing(node.prefix)
            self.journaling.record(node)
            self.flusher.schedule(node)
        elif node.attached:
            self.journaling.changed(node, meta=True, journal=journal)
        else:
            node.ctime_ns = now_ns()  # removed, still open: nothing of it is written

    # -- extended attributes --------------------------------------------------------------

    async def getxattr(self, node: Node, name: str) -> bytes:
        """The value of `name`; ENODATA when `node` has none. May HEAD the object first."""
        value = (await self._kept(node, name)).get(name)
        if value is None:
            raise fs_error(errno.ENODATA)
        return value

    async def listxattr(self, node: Node) -> list[str]:
        """The names of `node`'s extended attributes the mount shows (`user.*`)."""
        return sorted(name for name in await self._kept(node, KEPT_PREFIX) if name.startswith(KEPT_PREFIX))

    async def setxattr(self, node: Node, name: str, value: bytes, flags: int = 0) -> None:
        """Set `name` (XATTR_CREATE: only a new one, else EEXIST; XATTR_REPLACE: only an
        existing one, else ENODATA). E2BIG when the node's attributes would not fit in
        its metadata (`XATTR_ROOM`)."""
        self._check_writable(node, name)
        xattrs = dict(await self._kept(node, name, reading=False))
        if flags & os.XATTR_CREATE and name in xattrs:
            raise fs_error(errno.EEXIST)
        if flags & os.XATTR_REPLACE and name not in xattrs:
            raise fs_error(errno.ENODATA)
        xattrs[name] = value
        if len(encode_xattrs(tuple(sorted(xattrs.items())))) > XATTR_ROOM:
            raise fs_error(errno.E2BIG, f"extended attributes over {XATTR_ROOM} bytes once encoded")
        node.xattrs = xattrs
        self.meta_changed(node)

    async def removexattr(self, node: Node, name: str) -> None:
        self._check_writable(node, name)
        xattrs = dict(await self._kept(node, name, reading=False))
        if xattrs.pop(name, None) is None:
            raise fs_error(errno.ENODATA)
        node.xattrs = xattrs or None
        self.meta_changed(node)

    def _check_writable(self, node: Node, name: str) -> None:
        if not name.startswith(KEPT_PREFIX):
            raise fs_error(errno.ENOTSUP, f"{name}: only user.* extended attributes are kept")
        if node.parent is None:
            raise fs_error(errno.ENOTSUP, "the mount's root has no object to keep extended attributes in")
        self.linked.writable(node)

    async def _kept(self, node: Node, name: str, *, reading: bool = True) -> dict[str, bytes]:
        """`node`'s extended attributes, once known: a name outside `user.` asks nothing
        of the store. Reading, a HEAD the store does not answer fails the call (EIO)
        rather than saying there are none; changing, see `for_change`."""
        if name.startswith(KEPT_PREFIX) and node.attrs_guessed:
            if reading:
                await self.listings.read_attrs(node)
            else:
                await self.for_change(node)
        return node.xattrs or {}

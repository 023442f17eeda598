"""The pyfuse3 adapter: kernel requests in, `core.Filesystem` calls out.

Every handler raises only `pyfuse3.FUSEError`: POSIX errors from the core keep their errno,
store errors map through `errno_for`, and anything unexpected is logged with its traceback
and becomes EIO (pyfuse3 would otherwise stop the whole mount).
"""

from __future__ import annotations

import errno
import functools
import inspect
import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import pyfuse3
import trio

from ..core import Node
from ..core.filesystem import Filesystem
from ..stores import StoreError, StoreUnavailable, errno_for

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: Files look like they have this block size to programs choosing buffer sizes (cp, dd).
PREFERRED_IO_SIZE = 128 * 1024

#: Every kind of request the kernel may send (the handlers of pyfuse3's `Operations`).
REQUEST_KINDS = tuple(
    name for name, handler in vars(pyfuse3.Operations).items() if inspect.iscoroutinefunction(handler)
)

#: Directory listings start with `.` and `..` (readdir cookies 0 and 1).
DOTS = 2


def fuse_errors(handler: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn every exception of a handler into a FUSEError with the right errno."""

    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await handler(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY):
                log.debug("%s: %s", handler.__name__, exc, exc_info=exc.errno == errno.ENOSPC)
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except StoreError as exc:
            if isinstance(exc, StoreUnavailable):
                log.warning("%s: %s", handler.__name__, exc)
            else:
                log.info("%s: %s", handler.__name__, exc)
            raise pyfuse3.FUSEError(errno_for(exc)) from None
        except Exception:
            log.exception("unexpected error in %s", handler.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


def forget_kernel_name(parent_ino: int, name: str) -> None:
    """Make the kernel drop its cached entry `name` in directory `parent_ino`, so that the
    next lookup asks us (blocks: call it in a worker thread, never from a request handler)."""
    try:
        pyfuse3.invalidate_entry(pyfuse3.InodeT(parent_ino), os.fsencode(name))
    except OSError as exc:
        if exc.errno != errno.ENOENT:  # ENOENT: the kernel holds no such entry
            log.warning("could not drop the kernel's entry %r of inode %d: %s", name, parent_ino, exc)


def _counted(
    handler: Callable[P, Coroutine[Any, Any, T]], kind: str, counts: Counter[str]
) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        counts[kind] += 1
        return await handler(*args, **kwargs)

    return wrapper


#: What is told of each kernel request when metrics are on: its kind, its outcome ("ok",
#: or the errno's name) and the seconds it took.
Observe = Callable[[str, str, float], None]


def _timed(
    handler: Callable[P, Coroutine[Any, Any, T]], kind: str, observe: Observe
) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        outcome = "EIO"  # cancelled, or anything the handler let through
        try:
            result = await handler(*args, **kwargs)
            outcome = "ok"
            return result
        except pyfuse3.FUSEError as exc:
            outcome = errno.errorcode.get(exc.errno, "EIO")
            raise
        finally:
            observe(kind, outcome, time.perf_counter() - started)

    return wrapper


class FuseOperations(pyfuse3.Operations):
    """Kernel calls onto one `Filesystem`.

    At debug log level, `requests` counts the kernel's requests by kind (shown by
    `fusestore status --json` as `kernel_requests`); otherwise it is None and no handler
    pays for counting. With `observe` (metrics), every request is timed and told to it.
    """

    enable_writeback_cache = True
    supports_dot_lookup = True

    def __init__(self, fs: Filesystem, observe: Observe | None = None) -> None:
        super().__init__()
        self.fs = fs
        #: set once the kernel's INIT is answered: the kernel has applied its limits
        self.kernel_ready = trio.Event()
        fs.kernel.forget = forget_kernel_name
        self.requests: Counter[str] | None = None
        # Instance attributes: pyfuse3 looks each handler up on the object per request.
        if observe is not None:
            for kind in REQUEST_KINDS:
                setattr(self, kind, _timed(getattr(self, kind), kind, observe))
        if log.isEnabledFor(logging.DEBUG):
            self.requests = Counter()
            for kind in REQUEST_KINDS:
                setattr(self, kind, _counted(getattr(self, kind), kind, self.requests))

    def init(self) -> None:
        # Called just before the INIT answer is written: a task waiting for this event runs
        # after it, when the kernel has applied that answer (its read-ahead cap among them).
        self.kernel_ready.set()

    def attributes(
        self, node: Node, timeouts: Callable[[Node], tuple[float, float]] | None = None
    ) -> pyfuse3.EntryAttributes:
        """`node`'s attributes for the kernel; `timeouts`: its directory's
        `Listings.entry_timeouts` (a readdir's entries share it)."""
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = pyfuse3.InodeT(node.ino)
        # An inode's attributes never change behind our back (another client's version
        # is a new inode), but its name may lead elsewhere once what confirmed it expires.
        if timeouts is None:
            attrs.entry_timeout = self.fs.listings.entry_timeout(node)
            attrs.attr_timeout = self.fs.listings.attr_timeout(node)
        else:
            attrs.entry_timeout, attrs.attr_timeout = timeouts(node)
        (
            mode,
            attrs.st_nlink,  # 0 for a removed node a descriptor holds: it has no name
            attrs.st_uid,
            attrs.st_gid,
            attrs.st_rdev,
            attrs.st_size,
            attrs.st_blocks,
            attrs.st_atime_ns,
            attrs.st_mtime_ns,
            attrs.st_ctime_ns,
            attrs.generation,
        ) = node.kernel_stat()
        if self.fs.linked.in_link(node):
            mode &= ~0o222  # a linked store is read-only: say so before a write is tried
        attrs.st_mode = pyfuse3.ModeT(mode)
        attrs.st_blksize = PREFERRED_IO_SIZE
        return attrs

    # -- names --------------------------------------------------------------------------

    @fuse_errors
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        node = await self.fs.lookup(parent_inode, os.fsdecode(name))
        if node is None:
            negative = pyfuse3.EntryAttributes()
            negative.st_ino = pyfuse3.InodeT(0)
            negative.entry_timeout = self.fs.listings.absence_timeout(self.fs.directory(parent_inode))
            return negative
        return self.attributes(node)

    @fuse_errors
    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for inode, count in inode_list:
            self.fs.forget(inode, count)

    @fuse_errors
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self.attributes(await self.fs.getattr(inode))

    @fuse_errors
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        node = await self.fs.setattr(
            inode,
            mode=attr.st_mode if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            size=attr.st_size if fields.update_size else None,
            atime_ns=attr.st_atime_ns if fields.update_atime else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
            ctime_ns=attr.st_ctime_ns if fields.update_ctime else None,
            fh=fh,
        )
        return self.attributes(node)

    @fuse_errors
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return os.fsencode(await self.fs.readlink(inode))

    @fuse_errors
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        if stat.S_ISREG(mode):
            fh, node = await self.fs.create(
                parent_inode, os.fsdecode(name), mode, os.O_WRONLY, ctx.uid, ctx.gid
            )
            self.fs.release(fh)
        else:  # a FIFO, socket or device: an empty object that says what it is
            node = await self.fs.mknod(parent_inode, os.fsdecode(name), mode, (ctx.uid, ctx.gid), rdev)
        return self.attributes(node)

    @fuse_errors
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        node = await self.fs.mkdir(parent_inode, os.fsdecode(name), mode, ctx.uid, ctx.gid)
        return self.attributes(node)

    @fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self.fs.unlink(parent_inode, os.fsdecode(name))

    @fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self.fs.rmdir(parent_inode, os.fsdecode(name))

    @fuse_errors
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        node = await self.fs.symlink(parent_inode, os.fsdecode(name), os.fsdecode(target), ctx.uid, ctx.gid)
        return self.attributes(node)

    @fuse_errors
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        await self.fs.rename(
            parent_inode_old, os.fsdecode(name_old), parent_inode_new, os.fsdecode(name_new), flags
        )

    @fuse_errors
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EPERM)  # objects have one key each: no hard links

    # -- files --------------------------------------------------------------------------

    @fuse_errors
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        fh, node = await self.fs.create(parent_inode, os.fsdecode(name), mode, flags, ctx.uid, ctx.gid)
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh)), self.attributes(node)

    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        fh, keep_cache = await self.fs.open(inode, flags)
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh), keep_cache=keep_cache)

    @fuse_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return await self.fs.read(fh, off, size)

    @fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return await self.fs.write(fh, off, buf)

    @fuse_errors
    async def flush(self, fh: int) -> None:
        self.fs.flush(fh)

    @fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.fs.fsync(fh)

    @fuse_errors
    async def release(self, fh: int) -> None:
        self.fs.release(fh)

    # -- directories ----------------------------------------------------------------------

    @fuse_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        return pyfuse3.FileHandleT(await self.fs.opendir(inode))

    @fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        # Cookies 1 and 2 follow `.` and `..`; the handle's entry i is followed by i + 3, so
        # a kernel resuming from any cookie it was given gets neither a name twice nor a gap.
        # Waits only while the handle has nothing to give (a listing's next page).
        entries = await self.fs.readdir(fh, max(start_id - DOTS, 0))
        directory = self.fs.handles.directory(fh).node
        if start_id < DOTS:
            dots = ((b".", directory), (b"..", directory.parent or directory))
            for cookie in range(start_id, DOTS):
                dot, node = dots[cookie]
                # The kernel takes no reference on `.` and `..` (no lookup count to add).
                if not pyfuse3.readdir_reply(token, dot, self.attributes(node), cookie + 1):
                    return
        timeouts = self.fs.listings.entry_timeouts(directory)
        for name, node, next_id in entries:
            if not pyfuse3.readdir_reply(
                token, os.fsencode(name), self.attributes(node, timeouts), next_id + DOTS
            ):
                break
            node.lookups += 1

    @fuse_errors
    async def releasedir(self, fh: int) -> None:
        self.fs.releasedir(fh)

    @fuse_errors
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        return None  # directory changes are journaled as they happen

    # -- extended attributes ------------------------------------------------------------------
    # Without --xattr, ENOSYS: unlike ENODATA or ENOTSUP, it makes the kernel stop asking for
    # the rest of the mount (programs then get EOPNOTSUPP at once). While they are answered,
    # the kernel asks for security.capability before every write() and `ls -l` asks for two
    # names per entry. pyfuse3 answers setxattr's XATTR_CREATE and XATTR_REPLACE itself,
    # with a getxattr first.

    def _xattrs_kept(self) -> None:
        if not self.fs.settings.xattr:
            raise pyfuse3.FUSEError(errno.ENOSYS)

    @fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        self._xattrs_kept()
        return await self.fs.attributes.getxattr(self.fs.node(inode), os.fsdecode(name))

    @fuse_errors
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> Sequence[bytes]:
        self._xattrs_kept()
        return [os.fsencode(name) for name in await self.fs.attributes.listxattr(self.fs.node(inode))]

    @fuse_errors
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext) -> None:
        self._xattrs_kept()
        await self.fs.attributes.setxattr(self.fs.node(inode), os.fsdecode(name), value)

    @fuse_errors
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self._xattrs_kept()
        await self.fs.attributes.removexattr(self.fs.node(inode), os.fsdecode(name))

    # -- the file system ---------------------------------------------------------------------

    @fuse_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        capacity, free = await self.fs.capacity()
        block = 4096
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = block
        data.f_blocks = capacity // block
        data.f_bfree = data.f_bavail = free // block
        data.f_files = 2**32
        data.f_ffree = data.f_favail = 2**32 - len(self.fs.ns.nodes)
        data.f_namemax = 255
        return data

"""The floor of any pyfuse3 daemon: a file system that keeps everything in memory and
does nothing else (no cache files, no journal, no store, no threads).

It answers the kernel with the same options fusestore uses (writeback cache, 60 s entry
and attribute timeouts, `default_permissions`), so running a workload on it measures
what the kernel, pyfuse3 and Python alone cost per request on this machine. The bench
reports it next to fusestore for the metadata-heavy workloads (g, j): no Python FUSE
daemon can be faster than this one.

    python bench/floor_fs.py MOUNTPOINT     # foreground; SIGTERM or `umount` ends it
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time
from collections.abc import Sequence
from typing import Any

import pyfuse3
import trio

TTL = 60.0


class Node:
    __slots__ = ("children", "data", "gid", "ino", "lookups", "mode", "mtime_ns", "uid")

    def __init__(self, ino: int, mode: int, uid: int, gid: int) -> None:
        self.ino = ino
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.data = bytearray()
        self.mtime_ns = time.time_ns()
        self.children: dict[bytes, Node] | None = {} if stat.S_ISDIR(mode) else None
        self.lookups = 0


class FloorFS(pyfuse3.Operations):  # type: ignore[misc]
    enable_writeback_cache = True
    supports_dot_lookup = True

    def __init__(self) -> None:
        super().__init__()
        root = Node(pyfuse3.ROOT_INODE, stat.S_IFDIR | 0o755, 0, 0)
        self.nodes: dict[int, Node] = {root.ino: root}
        self.next_ino = root.ino + 1

    def attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.ino
        a.entry_timeout = a.attr_timeout = TTL
        a.st_mode = node.mode
        a.st_nlink = 2 if node.children is not None else 1
        a.st_uid, a.st_gid = node.uid, node.gid
        a.st_size = len(node.data)
        a.st_blksize = 128 * 1024
        a.st_blocks = -(-len(node.data) // 512)
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = node.mtime_ns
        return a

    def child(self, parent: int, name: bytes) -> Node:
        children = self.nodes[parent].children
        if children is None or name not in children:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return children[name]

    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> pyfuse3.EntryAttributes:
        node = self.child(parent_inode, name)
        node.lookups += 1
        return self.attrs(node)

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for ino, count in inode_list:
            node = self.nodes.get(ino)
            if node is not None:
                node.lookups -= count

    async def getattr(self, inode: int, ctx: Any = None) -> pyfuse3.EntryAttributes:
        return self.attrs(self.nodes[inode])

    async def setattr(
        self, inode: int, attr: Any, fields: Any, fh: int | None, ctx: Any
    ) -> pyfuse3.EntryAttributes:
        node = self.nodes[inode]
        if fields.update_size:
            del node.data[attr.st_size :]
            node.data.extend(bytes(attr.st_size - len(node.data)))
        if fields.update_mode:
            node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(attr.st_mode)
        if fields.update_uid:
            node.uid = attr.st_uid
        if fields.update_gid:
            node.gid = attr.st_gid
        if fields.update_mtime:
            node.mtime_ns = attr.st_mtime_ns
        return self.attrs(node)

    def make(self, parent: int, name: bytes, mode: int, ctx: Any) -> Node:
        children = self.nodes[parent].children
        assert children is not None
        if name in children:
            raise pyfuse3.FUSEError(errno.EEXIST)
        node = Node(self.next_ino, mode, ctx.uid, ctx.gid)
        self.next_ino += 1
        self.nodes[node.ino] = node
        children[name] = node
        node.lookups += 1
        return node

    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: Any) -> pyfuse3.EntryAttributes:
        return self.attrs(self.make(parent_inode, name, stat.S_IFDIR | mode, ctx))

    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: Any
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        node = self.make(parent_inode, name, mode, ctx)
        return pyfuse3.FileInfo(fh=node.ino), self.attrs(node)

    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        return pyfuse3.FileInfo(fh=inode, keep_cache=True)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        return bytes(self.nodes[fh].data[off : off + size])

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        data = self.nodes[fh].data
        if off > len(data):
            data.extend(bytes(off - len(data)))
        data[off : off + len(buf)] = buf
        return len(buf)

    async def flush(self, fh: int) -> None:
        pass

    async def fsync(self, fh: int, datasync: bool) -> None:
        pass

    async def release(self, fh: int) -> None:
        pass

    async def unlink(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        children = self.nodes[parent_inode].children
        assert children is not None
        self.child(parent_inode, name)
        del children[name]

    async def opendir(self, inode: int, ctx: Any) -> int:
        return inode

    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        children = self.nodes[fh].children or {}
        for i, (name, node) in enumerate(sorted(children.items())):
            if i >= start_id and not pyfuse3.readdir_reply(token, name, self.attrs(node), i + 1):
                return

    async def statfs(self, ctx: Any) -> pyfuse3.StatvfsData:
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_blocks = s.f_bfree = s.f_bavail = 2**30
        s.f_files = s.f_ffree = s.f_favail = 2**20
        s.f_namemax = 255
        return s


def main() -> None:
    mountpoint = sys.argv[1]
    options = set(pyfuse3.default_options) | {"fsname=floor", "default_permissions"}
    pyfuse3.init(FloorFS(), mountpoint, options)
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    os.umask(0o022)
    main()

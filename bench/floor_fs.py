"""The floor of any pyfuse3 daemon: a file system that keeps everything in memory and
does nothing else (no cache files, no journal, no store, no threads).

It answers the kernel with the same options fusestore uses (writeback cache, 60 s entry
and attribute timeouts, `default_permissions`), so running a workload on it measures
what the kernel, pyfuse3 and Python alone cost per request on this machine. The bench
reports it next to fusestore for the metadata-heavy workloads (g, j): no Python FUSE
daemon can be faster than this one.

    python bench/floor_fs.py MOUNTPOINT     # foreground; SIGTERM or `umount` ends it

With `--object s3://BUCKET/KEY --endpoint-url URL` it also shows that one object as a
file, streamed on its first read from the server into memory with boto3 (4 MiB at a time,
straight from the socket into place) while reads are answered as soon as their bytes are
in: the floor of a cold sequential read (b) for any pyfuse3 daemon without a cache file.
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
import threading
import time
from collections.abc import Sequence
from typing import Any

import pyfuse3
import trio

from fusestore.service.daemon import READ_AHEAD_KIB
from fusestore.service.mounts import set_read_ahead

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


class StreamedObject:
    """One object's bytes, arriving in a worker thread; `wait` yields until a range is in."""

    CHUNK = 4 * 1024 * 1024

    def __init__(self, client: Any, bucket: str, key: str, node: Node) -> None:
        self.client, self.bucket, self.key, self.node = client, bucket, key, node
        self.have = 0
        self.started = False
        self.arrived = trio.Event()

    def _download(self, token: trio.lowlevel.TrioToken) -> None:
        body = self.client.get_object(Bucket=self.bucket, Key=self.key)["Body"]
        response = body._raw_stream._fp  # the socket's HTTP response: no copies on the way
        view = memoryview(self.node.data)
        while count := response.readinto(view[self.have : self.have + self.CHUNK]):
            self.have += count
            token.run_sync_soon(self._wake)
        if self.have < len(view):
            raise OSError(f"the object ended {len(view) - self.have} bytes early")

    def _wake(self) -> None:
        self.arrived.set()
        self.arrived = trio.Event()

    async def wait(self, end: int) -> None:
        if not self.started:
            self.started = True
            token = trio.lowlevel.current_trio_token()
            threading.Thread(target=self._download, args=(token,), daemon=True).start()
        while self.have < min(end, len(self.node.data)):
            await self.arrived.wait()


class StreamingFloorFS(FloorFS):
    """FloorFS plus one object streamed from an S3 server (see the module's docstring)."""

    def __init__(self, url: str, endpoint_url: str) -> None:
        super().__init__()
        import boto3  # only this mode needs it

        bucket, _, key = url.removeprefix("s3://").partition("/")
        client = boto3.client("s3", endpoint_url=endpoint_url)
        node = Node(self.next_ino, stat.S_IFREG | 0o644, 0, 0)
        self.next_ino += 1
        node.data = bytearray(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        self.nodes[node.ino] = node
        root = self.nodes[pyfuse3.ROOT_INODE].children
        assert root is not None
        root[os.fsencode(key.rpartition("/")[2])] = node
        self.streamed = {node.ino: StreamedObject(client, bucket, key, node)}

    async def read(self, fh: int, off: int, size: int) -> bytes:
        streamed = self.streamed.get(fh)
        if streamed is not None:
            await streamed.wait(off + size)
        return await super().read(fh, off, size)


async def _serve(mountpoint: str) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pyfuse3.main)
        await trio.sleep(0.2)  # mounted by now: raise its read-ahead as fusestore does
        set_read_ahead(mountpoint, READ_AHEAD_KIB)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mountpoint")
    parser.add_argument("--object", help="s3://BUCKET/KEY to show as a file, streamed on first read")
    parser.add_argument("--endpoint-url", help="the S3 server of --object")
    args = parser.parse_args()
    fs = StreamingFloorFS(args.object, args.endpoint_url) if args.object else FloorFS()
    options = set(pyfuse3.default_options) | {"fsname=floor", "default_permissions"}
    pyfuse3.init(fs, args.mountpoint, options)
    try:
        trio.run(_serve, args.mountpoint)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    os.umask(0o022)
    main()

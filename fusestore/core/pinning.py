"""`fusestore pin` and `unpin` on a mounted tree (see `pins` for what a pin is).

They get what they use of the mount (`PinnedTree`: its namespace, contents, pins and
fetcher, a lookup and a recursive listing), never the file system itself. Both run on
the trio thread; `pin` yields while it lists and fetches (worker threads, through the
store calls).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from ..cache import BLOCK_SIZE, ContentStore
from ..cache.pins import PinProgress, Pins, PinTooBig
from ..stores import StoreError
from .fetcher import Fetcher
from .namespace import Namespace
from .nodes import Kind, Node

log = logging.getLogger(__name__)

#: Files fetched at once by a pin (each one stream; small files are one GET each).
PIN_FETCHES = 8


class _CacheSize(Protocol):
    @property
    def cache_size(self) -> int: ...


class PinnedTree(Protocol):
    """What pinning uses of a mounted tree (the `Filesystem` is one)."""

    @property
    def ns(self) -> Namespace: ...
    @property
    def contents(self) -> ContentStore: ...
    @property
    def pins(self) -> Pins: ...
    @property
    def fetcher(self) -> Fetcher: ...
    @property
    def settings(self) -> _CacheSize: ...

    async def child(self, parent: Node, name: str) -> Node | None:
        """The entry `name` of directory `parent` (listed when not fresh), or None."""
        ...

    async def load_tree(self, directory: Node) -> None:
        """Everything below `directory` listed (one recursive listing)."""
        ...


def key_of(path: str) -> str:
    """The key a path relative to the mount root names (`a/b` for `/a/b/`, `` for `/`)."""
    return "/".join(part for part in path.split("/") if part not in ("", "."))


async def node_at_path(fs: PinnedTree, path: str) -> Node:
    """The node at `path` (relative to the mount root), listing what is not listed yet."""
    node = fs.ns.root
    for name in key_of(path).split("/") if key_of(path) else []:
        if not node.is_dir:
            raise OSError(errno.ENOTDIR, f"/{path}: not a directory on the way")
        child = await fs.child(node, name)
        if child is None:
            raise OSError(errno.ENOENT, f"/{key_of(path)}: no such file or directory")
        node = child
    return node


async def pin(
    fs: PinnedTree, path: str, report: Callable[[PinProgress], Awaitable[None]] | None = None
) -> PinProgress:
    """Pin `path` (a file, or a directory and everything below it): keep its files' data
    from eviction, and fetch whatever the cache lacks. Refused with PinTooBig before
    anything is fetched when all pinned data would not fit in `--cache-size`. A file that
    cannot be fetched is named in the result's `errors` (the pin stays: running it again
    fetches the rest); `report` hears of the progress after each file."""
    for _ in range(3):
        node = await node_at_path(fs, path)
        if node.is_dir:
            await fs.load_tree(node)
        if node.attached:
            break
        # Compacted meanwhile (the kernel forgot its directory's entries): look it up again.
    key = node.key
    files = [sub for sub in node.walk() if sub.kind is Kind.FILE]
    progress = PinProgress("/" + key, len(files), sum(sub.size for sub in files))
    elsewhere = fs.contents.kept_bytes_except(
        lambda other: not key or other == key or other.startswith(key + "/")
    )
    limit = fs.settings.cache_size
    if elsewhere + progress.bytes_total > limit:
        raise PinTooBig(
            errno.ENOSPC,
            f"cannot pin /{key}: it holds {progress.bytes_total / 2**20:.1f} MiB, and with the "
            f"{elsewhere / 2**20:.1f} MiB pinned already that is more than the cache's "
            f"{limit / 2**20:.1f} MiB (--cache-size); raise --cache-size or pin less",
        )
    fs.pins.add(key)
    fs.contents.keep_again()
    limiter = trio.CapacityLimiter(PIN_FETCHES)

    async def fetch(sub: Node) -> None:
        async with limiter:
            try:
                fetched = await fetch_whole(fs.fetcher, sub)
            except (StoreError, OSError) as exc:
                progress.errors.append(f"{sub.path()}: {exc}")
                log.warning("pin: %s not fetched: %s", sub.path(), exc)
                fetched = 0
            progress.files_done += 1
            progress.bytes_done += sub.size
            progress.bytes_fetched += fetched
            if report is not None:
                await report(progress)

    async with trio.open_nursery() as nursery:
        for sub in files:
            nursery.start_soon(fetch, sub)
    log.info(
        "pinned /%s: %d file(s), %.1f MiB (%.1f MiB fetched)",
        key,
        progress.files_done,
        progress.bytes_total / 2**20,
        progress.bytes_fetched / 2**20,
    )
    return progress


async def fetch_whole(fetcher: Fetcher, node: Node) -> int:
    """Bring every byte of `node`'s data into the cache; how many had to be fetched.

    Worker thread: the GETs, through the fetcher's store calls."""
    content = node.content
    if content is None:
        if node.remote_key is None or node.etag is None:
            return 0  # made here and not uploaded yet: its data is all local
        content = fetcher.contents.clean_for(node.remote_key, node.etag, node.remote_size)
    missing = sum(count for _first, count in content.missing_runs(0, content.size))
    content.pins += 1  # not evicted half-way (a content kept for a pin is not anyway)
    try:
        await fetcher.fetch_all(content)
    finally:
        content.pins -= 1
    if not content.dirty and content.source is not None:
        fetcher.contents.save(content, *content.source)
    return min(content.size, missing * BLOCK_SIZE)


def unpin(fs: PinnedTree, path: str) -> None:
    """Let the data under a pinned path be evicted again (it stays cached until then)."""
    key = key_of(path)
    if not fs.pins.remove(key):
        above = [pinned for pinned in fs.pins if pinned == "" or key.startswith(pinned + "/")]
        where = f"; it is under the pin of /{above[0]}" if above else ""
        raise OSError(errno.ENOENT, f"/{key} is not pinned{where}")
    fs.contents.keep_again()

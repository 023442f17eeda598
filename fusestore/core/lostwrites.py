"""Writes the cache disk could not store, after the kernel had accepted them.

With the kernel's writeback cache, write(2) returns once the kernel holds the data; it
reaches us later, and when the cache disk cannot take it the writer learns only at fsync
or close. The kernel meanwhile shows its own size and pages of the file, and it trusts
them over ours for as long as it caches the inode. So a loss is settled here: the file
keeps what the cache holds (`Content.lost_write` says what that is, and never leaves
zeros standing in for lost bytes), the descriptors of the kernel inode that lost the
write may not grow the file past that any more, and the node takes a new generation,
which makes the kernel's next lookup of the name a new inode showing exactly what the
file keeps. Everything here is inline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ..cache import Content
from .nodes import Node

log = logging.getLogger(__name__)

Buffer = TypeVar("Buffer", bytes, memoryview)


class Descriptor(Protocol):
    """An open file as far as a loss is concerned."""

    node: Node
    #: the node's generation when opened: which kernel inode it belongs to
    generation: int
    #: the end past which it may not write (None: anywhere)
    limit: int | None


@dataclass
class Loss:
    #: the file was made shorter (its journal record and upload must follow)
    cut: bool
    #: the node has a new generation: the kernel must drop the name
    new_inode: bool


def writable_part(handle: Descriptor, offset: int, data: Buffer) -> Buffer:
    """The part of a write `handle` may still make: all of it, unless a loss settled
    since it was opened put a limit on it, and this one would land past what the file
    kept (the lost bytes would read as zeros in the middle); empty when none of it may.
    A write that yields must ask again right before it writes: a loss may come meanwhile."""
    if handle.limit is None or offset + len(data) <= handle.limit:
        return data
    return data[: max(0, handle.limit - offset)]


def settle(
    handle: Descriptor,
    handles: Iterable[Descriptor],
    content: Content,
    start: int,
    end: int,
    error: OSError,
    before_cut: Callable[[int], None] = lambda size: None,
) -> Loss:
    """Bytes [start, end) written through `handle` into `content` were not stored.
    `handles`: every descriptor open on the same node; `before_cut(size)` is called
    before the cache file is cut to `size` bytes. Logs one warning per kernel inode."""
    node = handle.node
    size, limit = content.lost_write(start, end)
    cut = size < content.size
    if cut:
        before_cut(size)
        content.truncate(size)
        node.size = size
    for other in handles:
        # A cut limits every descriptor: each kernel inode open on the file may still send
        # pages past it (a newer one than the losing one too).
        if cut or other.generation <= handle.generation:
            other.limit = limit if other.limit is None else min(other.limit, limit)
    told = handle.generation != node.generation  # a loss of this kernel inode was settled
    if told and not cut:
        return Loss(cut=False, new_inode=False)
    node.generation += 1
    if not told:
        log.warning(
            "%s: %d bytes written at offset %d could not be stored (%s); the file is now "
            "%d bytes, what the cache holds of it, and that is what the store gets",
            node.path(),
            end - start,
            start,
            error.strerror or error,
            node.size,
        )
    return Loss(cut=cut, new_inode=True)

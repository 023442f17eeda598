"""`Node.kernel_stat`: what the kernel is told of a node, in one call (a readdirplus entry
asks it of every name a walk passes), is what the node's fields say, for every kind of
node, clean or with the fields most nodes never set."""

from __future__ import annotations

from typing import Any

import pytest

from fusestore.core import Kind, Node


class _Held:
    """A file's cache content, as far as `du` asks it."""

    def __init__(self, held: int) -> None:
        self.held = held

    def stored_or_held(self) -> int:
        return self.held


def _expected(node: Node) -> tuple[int, ...]:
    held = node.size if node.content is None else node.content.stored_or_held()
    return (
        node.mode,
        (2 if node.is_dir else 1) if node.attached else 0,
        node.uid,
        node.gid,
        node.rdev,
        node.size,
        -(-held // 512),
        node.accessed_ns,
        node.mtime_ns,
        node.ctime_ns,
        node.generation,
    )


def _file(**fields: Any) -> Node:
    node = Node(7, Kind.FILE, "f", None, 0o640, 1000, 1001, 5_000_000_123, size=1_000_000)
    for name, value in fields.items():
        setattr(node, name, value)
    return node


CASES = {
    "a clean listed file": lambda: _file(),
    "an empty file": lambda: _file(size=0),
    "a directory": lambda: Node(3, Kind.DIR, "d", None, 0o755, 0, 0, 1),
    "a symlink": lambda: Node(4, Kind.SYMLINK, "l", None, 0o777, 0, 0, 2, size=11),
    "a device": lambda: _file(kind=Kind.CHAR_DEVICE, rdev=0x0501, size=0),
    "a fifo": lambda: _file(kind=Kind.FIFO, size=0),
    "a file with its own atime": lambda: _file(atime_ns=42),
    "a file with a new generation": lambda: _file(generation=3),
    "a removed file still open": lambda: _file(attached=False, opens=1),
    "a removed directory": lambda: Node(3, Kind.DIR, "d", None, 0o700, 0, 0, 1),
    "a file with cache content": lambda: _file(content=_Held(3 * 1024 * 1024 + 1)),
    "a sparse file written here": lambda: _file(content=_Held(0), data_dirty=True),
    "a changed ctime": lambda: _file(ctime_ns=9_000_000_000),
}


@pytest.mark.parametrize("case", list(CASES))
def test_kernel_stat_is_what_the_fields_say(case: str) -> None:
    node = CASES[case]()
    if case == "a removed directory":
        node.attached = False
    assert node.kernel_stat() == _expected(node)

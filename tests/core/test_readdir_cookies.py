"""The adapter's readdir cookies: `.` and `..` first, then every entry once, whatever
number of entries the kernel's buffer takes per request (no kernel: `readdir_reply` is
replaced by a buffer of a given size)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fusestore.service import fuse_ops
from fusestore.service.fuse_ops import FuseOperations

from .conftest import Env, listdir, mkdir, write_file

pytestmark = pytest.mark.trio

NAMES = [f"f{i:02}" for i in range(7)]


class Buffer:
    """One readdir request's reply: room for `room` entries."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.entries: list[tuple[bytes, int, int]] = []


def reply(token: Buffer, name: bytes, attrs: Any, next_id: int) -> bool:
    if len(token.entries) == token.room:
        return False
    token.entries.append((name, attrs.st_ino, next_id))
    return True


async def test_every_entry_once_at_any_buffer_size(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fuse_ops.pyfuse3, "readdir_reply", reply)
    async with env.mount() as fs:
        d = await mkdir(fs, "d")
        for name in NAMES:
            await write_file(fs, f"d/{name}", b"x")
        nodes = await listdir(fs, "d")
        ops = FuseOperations(fs)
        fs.kernel.forget = None  # no kernel here
        for room in range(1, len(NAMES) + 4):
            fh = await ops.opendir(d.ino, None)  # type: ignore[arg-type]
            lookups = {name: nodes[name].lookups for name in NAMES}
            dots = (d.lookups, fs.directory(1).lookups)
            listed: list[tuple[bytes, int]] = []
            cookie = 0
            while True:
                buffer = Buffer(room)
                await ops.readdir(fh, cookie, buffer)  # type: ignore[arg-type]
                if not buffer.entries:
                    break
                listed += [(name, ino) for name, ino, _ in buffer.entries]
                cookie = buffer.entries[-1][2]  # the kernel resumes after the last it took
            await ops.releasedir(fh)
            assert listed == [(b".", d.ino), (b"..", 1)] + [
                (name.encode(), nodes[name].ino) for name in NAMES
            ], room
            # The kernel holds one more reference on each listed entry, none on the dots.
            assert {name: nodes[name].lookups for name in NAMES} == {
                name: n + 1 for name, n in lookups.items()
            }
            assert (d.lookups, fs.directory(1).lookups) == dots, room


class CountedNames(list[str]):
    """A handle's names that count how many were read."""

    reads = 0

    def __getitem__(self, index: Any) -> Any:
        self.reads += 1
        return super().__getitem__(index)

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self)):
            yield self[i]


async def test_a_readdir_request_reads_only_the_entries_it_returns(env: Env) -> None:
    """Each request costs what it returns, not the directory's size: listing a directory
    of N entries in requests of a few hundred stays linear in N."""
    async with env.mount() as fs:
        root = fs.directory(1)
        assert root.children is not None
        names = CountedNames(f"n{i:06}" for i in range(100_000))
        root.children.update((name, root) for name in names)  # the entries, as cheaply as can be
        fh = await fs.opendir(1)
        fs.handles.directory(fh).names = names
        names.reads = 0
        taken = []
        for name, _, cookie in await fs.readdir(fh, 99_000):
            taken.append((name, cookie))
            if len(taken) == 300:  # the kernel's buffer is full
                break
        assert taken == [(f"n{i:06}", i + 1) for i in range(99_000, 99_300)]
        assert names.reads <= 302
        assert list(await fs.readdir(fh, 99_998)) == [("n099998", root, 99_999), ("n099999", root, 100_000)]
        fs.releasedir(fh)
        root.children.clear()

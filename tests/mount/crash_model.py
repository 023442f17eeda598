"""A random file workload on a mount, and the reference model a crash test checks the store
against.

`Workload.run` creates, appends, patches, rewrites, renames (files and the directory),
deletes and fsyncs files of a small pool of names, in one thread, recording every operation
in a `Model` with the moment it returned. The daemon may be killed at any moment: the
operation then in flight is kept as one that may or may not have happened (or, for a write,
happened in part).

What a kill -9 guarantees (docs/semantics.md, "Crashes"), as `Model.allowed` applies it to
each name on its own:

- an operation that returned more than `grace` seconds before the kill is reflected (the
  journal holds every change within 2 s, at once for most);
- a file fsynced is reflected as of that fsync, whenever it happened;
- later operations may or may not be, so the name holds the value it had then or any value
  it was given since (absent included, for a name deleted or renamed away).

So a name that was deleted or renamed away before the grace and never given a value since
must be absent, and every object must be a version the workload wrote for its name.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

KiB = 1024
MiB = 1024 * KiB
#: The directories the workload's subdirectory moves between (one exists at a time).
DIRS = ("d", "e")
ROOT_NAMES = tuple(f"f{i}" for i in range(6))
DIR_CHILDREN = tuple(f"g{i}" for i in range(4))
#: The value of a directory's name (`d/`) in the model while it exists.
DIR = "<dir>"
PAGE = 4096


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Op:
    """One operation: the value each name it changed got (None: absent), the names whose
    value it made durable (fsync), and when it ran. `ended` is None for the operation in
    flight when the daemon died."""

    seq: int
    kind: str
    changes: dict[str, str | None]
    fsynced: tuple[str, ...]
    started: float
    ended: float | None = None
    #: for a write in flight: name -> (bytes before, bytes intended, whether it truncated)
    partial: dict[str, tuple[bytes, bytes, bool]] = field(default_factory=dict)
    size: int = 0

    def describe(self, kill: float) -> str:
        ended = "in flight" if self.ended is None else f"returned {kill - self.ended:.2f}s before the kill"
        changes = ", ".join(f"{name}={(value or 'absent')[:8]}" for name, value in self.changes.items())
        sync = f" fsync {','.join(self.fsynced)}" if self.fsynced else ""
        return f"#{self.seq} {self.kind} {changes}{sync} ({ended})"


class Model:
    """The names of one round: their values at its start (what the store held), and every
    operation since. Values are sha256 digests of a file's bytes, DIR, or None (absent)."""

    def __init__(self, baseline: dict[str, str | None]) -> None:
        self.baseline = dict(baseline)
        self.ops: list[Op] = []

    def names(self) -> set[str]:
        found = set(self.baseline)
        for op in self.ops:
            found |= set(op.changes) | set(op.fsynced)
        return found

    def value_at(self, name: str, seq: int) -> str | None:
        value = self.baseline.get(name)
        for op in self.ops:
            if op.seq > seq:
                break
            if op.ended is not None and name in op.changes:
                value = op.changes[name]
        return value

    def floor(self, name: str, kill: float, grace: float) -> int:
        """The last operation `name` must reflect: the last one that returned `grace`
        seconds before the kill, or the last fsync of the name, whichever came later."""
        done = [op for op in self.ops if op.ended is not None]
        settled = max((op.seq for op in done if op.ended is not None and op.ended <= kill - grace), default=0)
        synced = max((op.seq for op in done if name in op.fsynced), default=0)
        return max(settled, synced)

    def allowed(self, name: str, kill: float, grace: float) -> set[str | None]:
        """Every value `name` may have in the store after the crash (see the module's doc)."""
        floor = self.floor(name, kill, grace)
        values = {self.value_at(name, floor)}
        for op in self.ops:
            if op.seq > floor and name in op.changes:
                values.add(op.changes[name])
        return values

    def in_flight(self) -> Op | None:
        return self.ops[-1] if self.ops and self.ops[-1].ended is None else None

    def timeline(self, name: str, kill: float) -> str:
        lines = [f"  at the round's start: {(self.baseline.get(name) or 'absent')[:8]}"]
        lines += [f"  {op.describe(kill)}" for op in self.ops if name in op.changes or name in op.fsynced]
        return "\n".join(lines)


def partial_write(found: bytes, before: bytes, intended: bytes, truncated: bool) -> bool:
    """Whether `found` is what a write cut short may leave: each byte the one before (unless
    the file was truncated first), the one written, or zero (a page not written yet)."""
    if found == before:
        return True
    limit = max(len(intended), 0 if truncated else len(before))
    if len(found) > limit:
        return False
    zero = bytes(PAGE)
    for start in range(0, len(found), PAGE):
        page = found[start : start + PAGE]
        new = intended[start : start + len(page)]
        old = b"" if truncated else before[start : start + len(page)]
        if page in (new, old, zero[: len(page)]):
            continue
        for i, byte in enumerate(page):
            at = start + i
            choices = {0}
            if at < len(intended):
                choices.add(intended[at])
            if not truncated and at < len(before):
                choices.add(before[at])
            if byte not in choices:
                return False
    return True


@dataclass
class Sizes:
    """File sizes the workload draws: log-uniform in [smallest, largest], and the size of
    the one big (multipart) file a round may write."""

    smallest: int
    largest: int
    big: tuple[int, int]
    #: the workload deletes files rather than grow past this many bytes in all
    live_limit: int

    def draw(self, rng: random.Random) -> int:
        return int(math.exp(rng.uniform(math.log(self.smallest), math.log(self.largest))))


class Workload:
    """Runs random operations on the mount at `root` in a thread of its own, recording
    them in `model`, until `stop` is set or an operation fails (the daemon was killed).

    `files` are the bytes of the files at the round's start; `kill_requested` tells the
    workload that the failure it is about to see is the kill's. Before `warmup` seconds have
    passed it makes only ordinary operations; then, if asked, it writes one big file
    (`big_done` is set once it is closed) or renames a file the store is busy with
    (`renamed` is set after it; `upload_after` is the daemon's write-back delay).
    """

    def __init__(
        self,
        root: Path,
        model: Model,
        files: dict[str, bytes],
        rng: random.Random,
        sizes: Sizes,
        *,
        warmup: float,
        want_big: bool,
        want_rename: bool,
        upload_after: float = 0.0,
        fsync_rate: float = 0.3,
        max_ops: int = 400,
    ) -> None:
        self.root = root
        self.model = model
        self.files = dict(files)
        self.dirs = {name[:-1] for name, value in model.baseline.items() if value == DIR}
        self.dirs |= {name.split("/")[0] for name in files if "/" in name}
        self.rng = rng
        self.sizes = sizes
        self.warmup = warmup
        self.want_big = want_big
        self.want_rename = want_rename
        self.upload_after = upload_after
        self.fsync_rate = fsync_rate
        self.max_ops = max_ops
        self.stop = threading.Event()
        self.kill_requested = threading.Event()
        self.big_done = threading.Event()
        self.renamed = threading.Event()
        self.started = 0.0
        #: names random operations leave alone
        self.reserved: set[str] = set()
        #: an operation that failed although the daemon was alive: (what, error)
        self.unexpected: list[str] = []
        self.bytes_fsynced = 0
        self._versions = 0

    # -- the thread --------------------------------------------------------------------

    def run(self) -> None:
        self.started = time.monotonic()
        try:
            if not self.dirs:
                self._mkdir(DIRS[0])
            while not self.stop.is_set():
                warm = time.monotonic() - self.started >= self.warmup
                if warm and self.want_big and not self.big_done.is_set():
                    # at the top (no directory rename moves it), then left alone: its
                    # upload is what the kill is to cut
                    name = self.rng.choice([n for n in ROOT_NAMES if n not in self.files] or list(ROOT_NAMES))
                    self._write(name, "create", big=True)
                    self.reserved.add(name)
                    self.big_done.set()
                elif warm and self.want_rename and not self.renamed.is_set():
                    self._rename_in_flight()
                    self.renamed.set()
                elif len(self.model.ops) < self.max_ops:
                    self._random_op()
                else:
                    time.sleep(0.05)
                    continue
                time.sleep(self.rng.uniform(0, 0.1))  # some files settle and go up
        except Exception as exc:  # the kill's, or a finding (or a bug here): reported
            if not self.kill_requested.is_set() or not isinstance(exc, OSError):
                op = self.model.in_flight()
                what = op.describe(time.monotonic()) if op else "?"
                self.unexpected.append(f"{what}: {exc!r}")

    # -- operations --------------------------------------------------------------------

    def _names(self) -> list[str]:
        return sorted(set(self.files) - self.reserved)

    def _pool(self) -> list[str]:
        pool = [name for name in ROOT_NAMES if name not in self.reserved]
        for directory in sorted(self.dirs):
            pool += [f"{directory}/{child}" for child in DIR_CHILDREN]
        return pool

    def _free_names(self) -> list[str]:
        return [name for name in self._pool() if name not in self.files]

    def _begin(self, kind: str, changes: dict[str, str | None], fsynced: tuple[str, ...] = ()) -> Op:
        op = Op(len(self.model.ops) + 1, kind, changes, fsynced, time.monotonic())
        self.model.ops.append(op)
        return op

    def _data(self, name: str, size: int) -> bytes:
        """`size` bytes no other version has (its tag recurs every 64 KiB)."""
        self._versions += 1
        tag = f"<{name}:{self._versions}:{self.rng.random()}>".encode()
        block = self.rng.randbytes(64 * KiB - len(tag))
        return ((tag + block) * (size // (64 * KiB) + 1))[:size]

    def _random_op(self) -> None:
        rng = self.rng
        names = self._names()
        live = sum(len(self.files[name]) for name in names)
        choices: list[tuple[str, float]] = []
        if self._free_names():
            choices.append(("create", 3.0))
        if names:
            grow = 0.2 if live > self.sizes.live_limit else 2.0
            choices += [("append", grow), ("patch", 1.0), ("rewrite", grow), ("rename", 2.0), ("fsync", 1.0)]
            choices.append(("delete", 4.0 if live > self.sizes.live_limit else 1.0))
        if len(self.dirs) == 1:
            choices.append(("rename_dir", 0.3))
        kinds, weights = zip(*choices, strict=True)
        kind = rng.choices(kinds, weights)[0]
        if kind == "create":
            self._write(rng.choice(self._free_names()), "create")
        elif kind in ("append", "patch", "rewrite"):
            self._write(rng.choice(names), kind)
        elif kind == "rename":
            self._rename_file()
        elif kind == "rename_dir":
            self._rename_dir()
        elif kind == "delete":
            name = rng.choice(names)
            self._begin("delete", {name: None})
            os.unlink(self.root / name)
            self._end()
            del self.files[name]
        else:
            name = rng.choice(names)
            self._begin("fsync", {}, (name,))
            fd = os.open(self.root / name, os.O_RDWR)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._end()
            self.bytes_fsynced += len(self.files[name])

    def _end(self) -> None:
        self.model.ops[-1].ended = time.monotonic()

    def _mkdir(self, directory: str) -> None:
        self._begin("mkdir", {f"{directory}/": DIR})
        os.mkdir(self.root / directory)
        self._end()
        self.dirs.add(directory)

    def _write(self, name: str, kind: str, *, big: bool = False) -> None:
        rng = self.rng
        before = self.files.get(name, b"")
        size = rng.randint(*self.sizes.big) if big else self.sizes.draw(rng)
        if kind == "patch":
            size = min(size, max(1, len(before)))
        data = self._data(name, size)
        offset = 0
        if kind in ("create", "rewrite"):
            intended, mode, truncated = data, "wb", True
        elif kind == "append":
            intended, mode, truncated = before + data, "ab", False
        else:
            offset = rng.randrange(0, len(before) + 1)
            intended = before[:offset] + data + before[offset + len(data) :]
            mode, truncated = "r+b", False
        sync = rng.random() < self.fsync_rate
        op = self._begin(kind, {name: digest(intended)}, (name,) if sync else ())
        op.partial[name] = (before, intended, truncated)
        op.size = size
        with open(self.root / name, mode, buffering=0) as f:
            if offset:
                f.seek(offset)
            view = memoryview(data)
            for start in range(0, len(data), MiB):
                f.write(view[start : start + MiB])
            if sync:
                os.fsync(f.fileno())
        self._end()
        op.partial.clear()
        self.files[name] = intended
        if sync:
            self.bytes_fsynced += len(intended)

    def _rename_in_flight(self) -> None:
        """A rename at a moment the store is busy with its source: a new file renamed
        while its upload is probably under way (`upload_after` seconds after its close),
        a file or the directory whose upload is done (the store copies, then deletes)."""
        rng = self.rng
        choice = rng.random()
        if choice < 0.5 and self._free_names():
            name = rng.choice(self._free_names())
            self._write(name, "create")
            time.sleep(self.upload_after + rng.uniform(0.05, 0.3))
            self._rename_file(name)
        elif choice < 0.75 and len(self.dirs) == 1:
            self._rename_dir()
        elif self._names():
            self._rename_file()

    def _rename_file(self, source: str | None = None) -> None:
        source = source or self.rng.choice(self._names())
        target = self.rng.choice([name for name in self._pool() if name != source])
        self._begin("rename", {source: None, target: digest(self.files[source])})
        os.rename(self.root / source, self.root / target)
        self._end()
        self.files[target] = self.files.pop(source)

    def _rename_dir(self) -> None:
        [source] = self.dirs
        [target] = [d for d in DIRS if d != source]
        moved = [name for name in self.files if name.startswith(f"{source}/")]
        changes: dict[str, str | None] = {f"{source}/": None, f"{target}/": DIR}
        for name in moved:
            changes[name] = None
        for name in moved:
            changes[f"{target}/{name.split('/', 1)[1]}"] = digest(self.files[name])
        self._begin("rename_dir", changes)
        os.rename(self.root / source, self.root / target)
        self._end()
        self.dirs = {target}
        for name in moved:
            self.files[f"{target}/{name.split('/', 1)[1]}"] = self.files.pop(name)

"""Differential test: random POSIX operations on the mount and on a plain local directory.

A hypothesis state machine applies the same operation to both trees (the reference is a
directory under tmp_path, the other the real daemon on a fresh bucket) and requires the
same outcome: the same errno when one side refuses, and afterwards the same names, kinds,
permission bits, sizes and bytes. Touched paths are compared after every step, the whole
tree every few steps and after every remount; at the end of each run the daemon is
unmounted, the bucket must hold exactly the reference tree (its files, byte for byte and
with their modes; `dir/` markers only for its directories, at least for the empty ones and
those with a mode of their own, each with the directory's mode), and a fresh mount of it
must show that tree again. Short pauses between operations let uploads and deletes happen
while the next operations run.

Every step is one concrete operation of `Differential` (`op_rename("a/b", "c")`, ...); a
failing run writes them to `trace<run>.txt` next to the mount (one per line: `rename 'a/b'
'c'`), so it can be replayed and reduced without hypothesis: FUSESTORE_DIFF_TRACE=<file>
replays one in `test_a_recorded_trace_still_matches`, and reduced traces of past failures
are kept in `traces/` and replayed on every run.

The run is seeded (`derandomize=True`; FUSESTORE_DIFF_SEED=<n> explores another seed) and
not shrunk by default, so a failure costs the same bounded time as a pass; set
FUSESTORE_DIFF_SHRINK=1 to let hypothesis shrink it (slow: every attempt starts a daemon).
"""

from __future__ import annotations

import ast
import contextlib
import errno
import hashlib
import itertools
import os
import random
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from .conftest import Mount

KiB = 1024
MAX_FILE = 300 * KiB  # files stay small; many cross the 128 KiB FUSE write size
NAMES = ("a", "b", "c")  # few names: renames onto existing entries and non-empty rmdirs are common
MAX_DEPTH = 4  # new names go in directories above this depth (a rename may still nest deeper)
ALL_PATHS = sorted("/".join(parts) for depth in (1, 2, 3) for parts in itertools.product(NAMES, repeat=depth))
MAX_FDS = 4
FILE_MODES = (0o644, 0o600, 0o640, 0o664, 0o666, 0o700, 0o755, 0o604)
DIR_MODES = (0o755, 0o700, 0o750, 0o775, 0o777, 0o711)
DEFAULT_DIR_PERM = 0o755  # what a directory without a marker shows (the daemon's umask 022)
WAIT_EVERY = 10  # steps at least between two pauses (each 0.05-0.3 s)
TREE_EVERY = 25  # steps between whole-tree comparisons
REMOUNT_AFTER = 120  # a remount becomes possible once this many steps ran since the last one

EXAMPLES = 13
STEPS = 300  # hypothesis ends longer runs early (its per-example data limit)
MIN_TOTAL_STEPS = 1500  # hypothesis ends some runs early: the count varies by a few percent


# Read at import: the session fixtures replace the environment before the test runs.
OTHER_SEED = os.environ.get("FUSESTORE_DIFF_SEED")
SHRINK = bool(os.environ.get("FUSESTORE_DIFF_SHRINK"))
#: Reduced traces of past failures, replayed as regression tests (plus FUSESTORE_DIFF_TRACE).
TRACES = sorted(Path(__file__).parent.glob("traces/*.txt"))
if os.environ.get("FUSESTORE_DIFF_TRACE"):
    TRACES.append(Path(os.environ["FUSESTORE_DIFF_TRACE"]))

REF, MNT = 0, 1
SIDES = ("reference", "mount")

Outcome = tuple[str, Any]  # ("ok", value) or ("err", errno name)


def outcome(fn: Callable[[int], Any], side: int) -> Outcome:
    try:
        return ("ok", fn(side))
    except OSError as exc:
        return ("err", errno.errorcode.get(exc.errno or 0, str(exc.errno)))


def payload(seed: int, length: int) -> bytes:
    return random.Random(seed).randbytes(length)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _short(value: Any) -> str:
    """repr with file contents shortened to their length and digest."""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes {_digest(value)}>"
    if isinstance(value, tuple | list):
        return "(" + ", ".join(_short(v) for v in value) + ")"
    return repr(value)


class Differential:
    """The reference directory and the mount, with the operations applied to both."""

    def __init__(self, ref: Path, mount: Mount, trace: Path | None = None) -> None:
        self.mount = mount
        self.roots = (ref, mount.path)
        self.fds: list[tuple[str, int, int]] = []  # (path opened, reference fd, mount fd)
        self.trace: list[str] = []
        self.trace_file = trace
        self.ops = 0  # operations applied (not counting checks and waits)

    # -- running operations ---------------------------------------------------------------

    def apply(self, name: str, *args: Any) -> None:
        """One traced operation: `op_<name>(*args)`."""
        self.trace.append(f"{name} {' '.join(map(repr, args))}")
        if name not in ("tree", "finish", "wait"):
            self.ops += 1
        getattr(self, f"op_{name}")(*args)

    def random_ops(self) -> int:
        """The operations of the run that count as random: hypothesis starts with runs whose
        choices are all zero (one operation, repeated); of those, the distinct ones count."""
        ops = [line for line in self.trace if line.partition(" ")[0] not in ("#", "tree", "wait", "finish")]
        distinct = len(set(ops))
        return len(ops) if distinct * 4 >= len(ops) else distinct

    def dump_trace(self, exc: BaseException) -> None:
        if self.trace_file is not None:
            self.trace_file.write_text("\n".join(self.trace) + "\n")
            exc.add_note(f"operations of this run: {self.trace_file}")
            # Also in the captured output: hypothesis may report a flaky run instead of this error.
            print(f"run failed: {exc}\noperations of this run: {self.trace_file}")

    def replay(self, lines: list[str]) -> None:
        """Apply a trace (skipping operations on descriptors that are not open)."""
        for line in lines:
            name, _, rest = line.partition(" ")
            args = [ast.literal_eval(a) for a in rest.split()] if rest else []
            if name in ("write_fd", "ftruncate", "fsync", "close") and args[0] >= len(self.fds):
                continue
            self.apply(name, *args)

    def log(self) -> str:
        return "daemon log (tail):\n" + self.mount.log_text()

    def path(self, side: int, rel: str) -> str:
        return os.path.join(self.roots[side], rel) if rel else str(self.roots[side])

    def both(self, what: str, fn: Callable[[int], Any]) -> Outcome:
        """Run `fn(side)` on the reference, then on the mount; the outcomes must agree."""
        ref, mnt = outcome(fn, REF), outcome(fn, MNT)
        if ref != mnt:
            raise AssertionError(f"{what}: reference {_short(ref)} but mount {_short(mnt)}\n{self.log()}")
        return ref

    def open_both(self, what: str, rel: str, flags: int, mode: int = 0o644) -> Outcome:
        """os.open on each side: ("ok", (reference fd, mount fd)) or the common error."""
        opened = [
            outcome(lambda side: os.open(self.path(side, rel), flags, mode), side) for side in (REF, MNT)
        ]
        if opened[REF][0] == opened[MNT][0] == "ok":
            return ("ok", (opened[REF][1], opened[MNT][1]))
        for result in opened:
            if result[0] == "ok":
                os.close(result[1])
        if opened[REF] != opened[MNT]:
            raise AssertionError(
                f"{what} {rel}: reference {_short(opened[REF])} but mount {_short(opened[MNT])}\n{self.log()}"
            )
        return opened[REF]

    def keep_fd(self, rel: str, result: Outcome) -> None:
        """Both sides opened `rel`: keep the pair, or close it when enough are open."""
        if result[0] != "ok":
            return
        fds = result[1]
        if len(self.fds) >= MAX_FDS:
            self.both("close (one too many open)", lambda side: os.close(fds[side]))
        else:
            self.fds.append((rel, *fds))

    def close_all(self) -> None:
        while self.fds:
            _, *fds = self.fds.pop()
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    # -- looking at both trees -------------------------------------------------------------

    def describe(self, side: int, rel: str) -> tuple[str, str, int | bytes]:
        """(kind, permission bits in octal, bytes of a file / 0)."""
        full = self.path(side, rel)
        st_ = os.lstat(full)
        perm = oct(stat.S_IMODE(st_.st_mode))
        if stat.S_ISDIR(st_.st_mode):
            return ("dir", perm, 0)
        if stat.S_ISREG(st_.st_mode):
            with open(full, "rb") as f:
                data = f.read()
            if len(data) != st_.st_size:
                raise AssertionError(f"{SIDES[side]} {rel}: stat says {st_.st_size} bytes, read {len(data)}")
            return ("file", perm, data)
        return ("other", perm, st_.st_size)

    def walk(self, side: int, top: str = "") -> dict[str, tuple[str, str, int | bytes]]:
        """Everything below `top`: rel path -> describe()."""
        found: dict[str, tuple[str, str, int | bytes]] = {}

        def visit(rel: str) -> None:
            for name in sorted(os.listdir(self.path(side, rel))):
                child = f"{rel}/{name}" if rel else name
                found[child] = self.describe(side, child)
                if found[child][0] == "dir":
                    visit(child)

        visit(top)
        return found

    def names(self, kind: str | None = None) -> list[str]:
        """Paths in the reference (of `kind`: "file" or "dir")."""
        found = []
        for here, dirs, files in os.walk(self.roots[REF]):
            rel = os.path.relpath(here, self.roots[REF])
            for name in dirs if kind == "dir" else files if kind == "file" else dirs + files:
                found.append(os.path.normpath(os.path.join(rel, name)))
        return sorted(found)

    def compare_paths(self, *rels: str, deep: bool = False) -> None:
        """The paths and their parent directories agree on both sides (`deep`: with subtrees)."""
        for rel in sorted(set(rels) | {os.path.dirname(r) for r in rels}):
            found = [outcome(lambda side, rel=rel: self.describe(side, rel), side) for side in (REF, MNT)]
            if found[REF] != found[MNT]:
                raise AssertionError(
                    f"{rel!r} after the step: reference {_short(found[REF])} but mount {_short(found[MNT])}\n"
                    f"{self.log()}"
                )
            if found[REF][0] == "ok" and found[REF][1][0] == "dir":
                if deep:
                    self.same_tree(self.walk(REF, rel), self.walk(MNT, rel), f"below {rel!r}")
                else:
                    listing = [sorted(os.listdir(self.path(side, rel))) for side in (REF, MNT)]
                    if listing[REF] != listing[MNT]:
                        raise AssertionError(
                            f"listing of {rel!r}: reference {listing[REF]} but mount "
                            f"{listing[MNT]}\n{self.log()}"
                        )

    def compare_fd(self, index: int) -> None:
        """An open file reads the same through both descriptors (even renamed or unlinked)."""
        rel, *fds = self.fds[index]

        def contents(side: int) -> tuple[int, str, bytes]:
            st_ = os.fstat(fds[side])
            return st_.st_size, oct(stat.S_IMODE(st_.st_mode)), os.pread(fds[side], MAX_FILE + 1, 0)

        self.both(f"read fd {index} (opened as {rel})", contents)

    def same_tree(self, ref: dict[str, Any], mnt: dict[str, Any], when: str) -> None:
        if ref == mnt:
            return
        lines = [
            f"  {rel}: reference {_short(ref.get(rel))} but mount {_short(mnt.get(rel))}"
            for rel in sorted(set(ref) | set(mnt))
            if ref.get(rel) != mnt.get(rel)
        ]
        raise AssertionError(f"trees differ ({when}):\n" + "\n".join(lines) + "\n" + self.log())

    def check_bucket(self) -> None:
        """Unmounted: the bucket holds the reference's files, byte for byte and with their
        modes, and markers for its empty directories and for those with a mode of their own."""
        tree = self.walk(REF)
        files = {rel: v for rel, v in tree.items() if v[0] == "file"}
        dirs = {rel: int(v[1], 8) for rel, v in tree.items() if v[0] == "dir"}
        empty = {rel for rel in dirs if not any(other.startswith(rel + "/") for other in tree)}
        objects = self.mount.objects()
        keys = {k for k in objects if not k.endswith("/")}
        markers = {k[:-1] for k in objects if k.endswith("/")}
        problems = []
        if keys != set(files):
            problems.append(
                f"objects that are no file: {sorted(keys - set(files))}; "
                f"files that are no object: {sorted(set(files) - keys)}"
            )
        if markers - set(dirs):
            problems.append(f"markers of no directory: {sorted(markers - set(dirs))}")
        # A non-empty directory keeps its marker when it has attributes of its own
        # (core/filesystem.py, marker_wanted): such a marker must carry the mode.
        needed = empty | {rel for rel, perm in dirs.items() if perm != DEFAULT_DIR_PERM}
        if needed - markers:
            problems.append(f"directories without the marker they need: {sorted(needed - markers)}")
        for rel in sorted(markers & set(dirs)):
            mode = self.mount.metadata(rel + "/").get("mode")
            if mode is None or stat.S_IMODE(int(mode)) != dirs[rel]:
                problems.append(f"{rel}/: marker mode {mode}, reference {oct(dirs[rel])}")
        for rel in sorted(keys & set(files)):
            body, (_, perm, data) = self.mount.get(rel), files[rel]
            assert isinstance(data, bytes)
            if body != data:
                problems.append(f"{rel}: object {_short(body)}, reference {_short(data)}")
            mode = self.mount.metadata(rel).get("mode")
            if mode is None or int(mode) != stat.S_IFREG | int(perm, 8):
                problems.append(f"{rel}: object mode {mode}, reference {perm}")
        if problems:
            raise AssertionError(
                "the bucket is not the reference tree:\n  " + "\n  ".join(problems) + "\n" + self.log()
            )

    # -- the operations (each traced by apply) -------------------------------------------------

    def op_tree(self) -> None:
        for index in range(len(self.fds)):
            self.compare_fd(index)
        self.same_tree(self.walk(REF), self.walk(MNT), "whole tree")

    def op_create(self, rel: str, mode: int, flags: int, keep: bool) -> None:
        result = self.open_both("create", rel, os.O_RDWR | os.O_CREAT | flags, mode)
        if result[0] == "ok":
            if keep:
                self.keep_fd(rel, result)
            else:
                self.both("close", lambda side: os.close(result[1][side]))
        self.compare_paths(rel)

    def op_open(self, rel: str) -> None:
        self.keep_fd(rel, self.open_both("open", rel, os.O_RDWR))
        self.compare_paths(rel)

    def op_write(self, rel: str, offset: int, length: int, seed: int) -> None:
        """Open, pwrite (past the end: a hole), close."""
        chunk = payload(seed, length)
        result = self.open_both("open for writing", rel, os.O_WRONLY)
        if result[0] == "ok":
            self.both("pwrite", lambda side: os.pwrite(result[1][side], chunk, offset))
            self.both("close", lambda side: os.close(result[1][side]))
        self.compare_paths(rel)

    def op_write_fd(self, index: int, offset: int, length: int, seed: int) -> None:
        chunk = payload(seed, length)
        self.both("pwrite on fd", lambda side: os.pwrite(self.fds[index][1 + side], chunk, offset))
        self.compare_fd(index)

    def op_truncate(self, rel: str, size: int) -> None:
        self.both("truncate", lambda side: os.truncate(self.path(side, rel), size))
        self.compare_paths(rel)

    def op_ftruncate(self, index: int, size: int) -> None:
        self.both("ftruncate", lambda side: os.ftruncate(self.fds[index][1 + side], size))
        self.compare_fd(index)

    def op_fsync(self, index: int) -> None:
        self.both("fsync", lambda side: os.fsync(self.fds[index][1 + side]))
        self.compare_fd(index)

    def op_close(self, index: int, reopen: bool) -> None:
        """Close a file; perhaps open its path again (which may now be another file, or none)."""
        rel, *fds = self.fds.pop(index)
        self.both("close", lambda side: os.close(fds[side]))
        if reopen:
            self.keep_fd(rel, self.open_both("reopen", rel, os.O_RDWR))
        self.compare_paths(rel)

    def op_unlink(self, rel: str) -> None:
        self.both("unlink", lambda side: os.unlink(self.path(side, rel)))
        self.compare_paths(rel)

    def op_chmod(self, rel: str, mode: int) -> None:
        self.both("chmod", lambda side: os.chmod(self.path(side, rel), mode))
        self.compare_paths(rel)

    def op_mkdir(self, rel: str, mode: int) -> None:
        self.both("mkdir", lambda side: os.mkdir(self.path(side, rel), mode))
        self.compare_paths(rel)

    def op_rmdir(self, rel: str) -> None:
        self.both("rmdir", lambda side: os.rmdir(self.path(side, rel)))
        self.compare_paths(rel)

    def op_rename(self, src: str, dst: str) -> None:
        self.both("rename", lambda side: os.rename(self.path(side, src), self.path(side, dst)))
        self.compare_paths(src, dst, deep=True)

    def op_wait(self, seconds: float) -> None:
        """Let the daemon upload (writeback delay 0.2 s) and delete what is due, so the next
        operations meet the store in another state."""
        time.sleep(seconds)

    def op_remount(self) -> None:
        """Close everything, unmount (which uploads everything), check the bucket, mount again."""
        self.close_all()
        code = self.mount.umount()
        assert code == 0, f"umount exited with {code}\n{self.log()}"
        self.check_bucket()
        self.mount.start()
        self.same_tree(self.walk(REF), self.walk(MNT), "after the remount")

    def op_finish(self) -> None:
        """Unmount, check the bucket, and check that a fresh mount shows the same tree."""
        self.close_all()
        self.op_remount()
        code = self.mount.umount()
        assert code == 0, f"umount exited with {code}\n{self.log()}"
        self.check_bucket()


# -- the hypothesis state machine ------------------------------------------------------------


def offsets() -> st.SearchStrategy[int]:
    """Offsets and sizes in [0, MAX_FILE], often next to a 128 KiB boundary."""
    near_boundary = st.builds(
        lambda k, d: min(MAX_FILE, max(0, k * 128 * KiB + d)), st.integers(0, 2), st.integers(-64, 64)
    )
    return st.one_of(st.integers(0, MAX_FILE), near_boundary, st.integers(0, 4 * KiB))


def lengths() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(1, 200), st.integers(1, 20 * KiB), st.integers(1, 140 * KiB))


seeds = st.integers(0, 2**32 - 1)


class Counter:
    ops = 0
    random = 0
    runs = 0
    remounts = 0


class DifferentialMachine(RuleBasedStateMachine):
    factory: ClassVar[Callable[..., Mount]]
    tmp: ClassVar[Path]

    def __init__(self) -> None:
        super().__init__()
        Counter.runs += 1
        self.run = Counter.runs
        self.d: Differential | None = None
        self.steps = 0
        self.since_remount = 0
        self.since_wait = 0
        self.healthy = True

    @initialize(ttl=st.sampled_from(["60", "0.5"]))
    def start(self, ttl: str) -> None:
        """A fresh bucket and daemon; with a short TTL the daemon lists the store during the run."""
        ref = self.tmp / f"ref{self.run}"
        ref.mkdir()
        mount = self.factory("--writeback-delay", "0.2", "--metadata-ttl", ttl, name=f"mnt{self.run}")
        self.d = Differential(ref, mount, self.tmp / f"trace{self.run}.txt")
        self.d.trace.append(f"# --metadata-ttl {ttl}")

    def teardown(self) -> None:
        if self.d is None:
            return
        Counter.ops += self.d.ops
        Counter.random += self.d.random_ops()
        self.d.close_all()
        if self.healthy:  # after a failure the fixture kills the daemon: the first error is reported
            self.do(self.d.apply, "finish")

    def do(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # (not hypothesis' StopTest: a run that ran out of data is no failure)
            self.healthy = False
            if self.d is not None:
                self.d.dump_trace(exc)
            raise

    def op(self, name: str, *args: Any) -> None:
        assert self.d is not None
        self.steps += 1
        self.since_remount += 1
        self.since_wait += 1
        self.do(self.d.apply, name, *args)

    def pick(self, data: st.DataObject, kind: str | None = None, label: str = "path") -> str:
        """Mostly an existing path (of `kind`), else a name in an existing directory."""
        assert self.d is not None
        candidates = self.d.names(kind)
        if candidates and data.draw(st.integers(0, 7), label=f"{label}: new?") > 0:
            return data.draw(st.sampled_from(candidates), label=label)
        return self.new_path(data, label)

    def new_path(self, data: st.DataObject, label: str = "path") -> str:
        """A name in an existing directory (often taken already), sometimes in a missing one."""
        assert self.d is not None
        if data.draw(st.integers(0, 7), label=f"{label}: anywhere?") == 0:
            return data.draw(st.sampled_from(ALL_PATHS), label=label)
        parents = [""] + [d for d in self.d.names("dir") if d.count("/") < MAX_DEPTH - 1]
        parent = data.draw(st.sampled_from(parents), label=f"{label}: directory")
        return os.path.join(parent, data.draw(st.sampled_from(NAMES), label=f"{label}: name"))

    def fd(self, data: st.DataObject) -> int:
        assert self.d is not None
        return data.draw(st.integers(0, len(self.d.fds) - 1), label="fd")

    def has_fds(self) -> bool:
        return self.d is not None and bool(self.d.fds)

    @rule(
        data=st.data(),
        mode=st.sampled_from(FILE_MODES),
        flags=st.sampled_from([0, os.O_EXCL, os.O_TRUNC]),
        keep=st.booleans(),
    )
    def create(self, data: st.DataObject, mode: int, flags: int, keep: bool) -> None:
        self.op("create", self.new_path(data), mode, flags, keep)

    @rule(data=st.data())
    def open(self, data: st.DataObject) -> None:
        self.op("open", self.pick(data, "file"))

    @rule(data=st.data(), offset=offsets(), length=lengths(), seed=seeds)
    def write(self, data: st.DataObject, offset: int, length: int, seed: int) -> None:
        self.op("write", self.pick(data, "file"), offset, max(1, min(length, MAX_FILE - offset)), seed)

    @precondition(has_fds)
    @rule(data=st.data(), offset=offsets(), length=lengths(), seed=seeds)
    def write_fd(self, data: st.DataObject, offset: int, length: int, seed: int) -> None:
        self.op("write_fd", self.fd(data), offset, max(1, min(length, MAX_FILE - offset)), seed)

    @rule(data=st.data(), size=offsets())
    def truncate(self, data: st.DataObject, size: int) -> None:
        self.op("truncate", self.pick(data, "file"), size)

    @precondition(has_fds)
    @rule(data=st.data(), size=offsets())
    def ftruncate(self, data: st.DataObject, size: int) -> None:
        self.op("ftruncate", self.fd(data), size)

    @precondition(has_fds)
    @rule(data=st.data())
    def fsync(self, data: st.DataObject) -> None:
        self.op("fsync", self.fd(data))

    @precondition(has_fds)
    @rule(data=st.data(), reopen=st.booleans())
    def close(self, data: st.DataObject, reopen: bool) -> None:
        self.op("close", self.fd(data), reopen)

    @rule(data=st.data())
    def unlink(self, data: st.DataObject) -> None:
        self.op("unlink", self.pick(data, "file"))

    @rule(data=st.data(), mode=st.sampled_from(FILE_MODES + DIR_MODES))
    def chmod(self, data: st.DataObject, mode: int) -> None:
        self.op("chmod", self.pick(data), mode)

    @rule(data=st.data(), mode=st.sampled_from(DIR_MODES))
    def mkdir(self, data: st.DataObject, mode: int) -> None:
        self.op("mkdir", self.new_path(data), mode)

    @rule(data=st.data())
    def rmdir(self, data: st.DataObject) -> None:
        self.op("rmdir", self.pick(data, "dir"))

    @rule(data=st.data(), kind=st.sampled_from(["file", "dir", None]))
    def rename(self, data: st.DataObject, kind: str | None) -> None:
        """Files and directories: onto existing entries, into other directories, into themselves."""
        assert self.d is not None
        src = self.pick(data, kind, label="source")
        how = data.draw(st.sampled_from(["existing", "sibling", "new", "into dir"]), label="target is")
        if how == "existing":
            dst = self.pick(data, label="target")
        elif how == "sibling":
            dst = os.path.join(os.path.dirname(src), data.draw(st.sampled_from(NAMES), label="name"))
        elif how == "into dir":
            directory = data.draw(st.sampled_from(self.d.names("dir") or [""]), label="directory")
            dst = os.path.join(directory, os.path.basename(src))
        else:
            dst = self.new_path(data, label="target")
        self.op("rename", src, dst)

    @precondition(lambda self: self.since_wait >= WAIT_EVERY)
    @rule(seconds=st.sampled_from([0.05, 0.15, 0.3]))
    def wait(self, seconds: float) -> None:
        """Let uploads and deletes (due 0.2 s after a change) happen between two operations."""
        self.op("wait", seconds)
        self.since_wait = 0

    @precondition(lambda self: self.since_remount >= REMOUNT_AFTER)
    @rule()
    def remount(self) -> None:
        Counter.remounts += 1
        self.op("remount")
        self.since_remount = 0

    @invariant()
    def whole_tree(self) -> None:
        if self.d is not None and self.steps and self.steps % TREE_EVERY == 0:
            self.do(self.d.apply, "tree")


@pytest.fixture
def machine(mount_factory: Callable[..., Mount], tmp_path: Path) -> Iterator[type[DifferentialMachine]]:
    DifferentialMachine.factory = staticmethod(mount_factory)  # type: ignore[assignment]
    DifferentialMachine.tmp = tmp_path
    Counter.ops = Counter.random = Counter.runs = Counter.remounts = 0
    yield DifferentialMachine


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_random_operations_match_a_local_directory(machine: type[DifferentialMachine]) -> None:
    phases = [Phase.explicit, Phase.generate, *([Phase.shrink] if SHRINK else [])]
    if OTHER_SEED:
        machine = seed(int(OTHER_SEED))(machine)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            derandomize=not OTHER_SEED,
            database=None,
            deadline=None,
            phases=phases,
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        ),
    )
    c = Counter
    summary = f"{c.ops} operations ({c.random} random) in {c.runs} runs, {c.remounts} remounts"
    print(summary)
    assert Counter.random >= MIN_TOTAL_STEPS, summary
    assert Counter.remounts >= 3, summary


@pytest.mark.timeout(120)
@pytest.mark.parametrize("trace", TRACES, ids=[trace.stem for trace in TRACES])
def test_a_recorded_trace_still_matches(
    mount_factory: Callable[..., Mount], tmp_path: Path, trace: Path
) -> None:
    """A trace (first line `# --metadata-ttl N`, then one operation per line) replayed on a
    fresh mount and a fresh reference directory, then unmounted and checked like a run."""
    header, *lines = trace.read_text().splitlines()
    ttl = header.split()[-1]
    ref = tmp_path / "ref"
    ref.mkdir()
    d = Differential(ref, mount_factory("--writeback-delay", "0.2", "--metadata-ttl", ttl))
    d.replay([line for line in lines if line.strip()])
    d.apply("finish")

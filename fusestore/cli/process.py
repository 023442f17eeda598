"""How a mount's daemon process runs: on the C library's allocator, with a lazier
cycle collector, and big buffers given back to the system as soon as they are freed.

The C allocator (`PYTHONMALLOC=malloc`).

Python's own small-object allocator returns a 1 MiB arena to the system only once every
object in it is freed. After a walk of a million entries was forgotten and dropped, a
handful of objects left in each arena (free-list entries, a counter, a timestamp) kept
the daemon at five times its idle size. With the C allocator, whose free pages
`malloc_trim` hands back after large drops (`core.compaction`), it returns to within a
few MiB of idle; a walk's peak and speed stay the same within noise (docs/architecture.md
has the figures).

The variable takes effect only when the interpreter starts, so a mount command executes
itself again once, first thing: the same process (PID, descriptors, environment), with the
variable set. A `PYTHONMALLOC` the user set is left as it is.

The cycle collector. A mount holds hundreds of thousands of long-lived objects (a node
per entry), and with the default thresholds every 700 new objects start a collection and
the full ones traverse every node: 0.64 s of the 4.4 s of CPU a cold `find` of 150,000
entries took, 7 full collections among it. Nodes are freed by reference counting (no
cycle holds a dropped one), so collections only find the few cycles of trio's
cancellations and tracebacks: a collection every 50,000 new objects finds them soon
enough (0.22 s in that walk, no full collection).

Big buffers. Upload workers read a part (8 MiB) and the store's SDK copies it, each in
its own thread, and frees both once sent. glibc maps such a buffer with mmap, but raises
its mmap threshold to the size of the first one freed (its dynamic threshold): the next
come from its heaps, one per thread, where small objects allocated meanwhile fragment
them and pin the freed memory. Writing 1 GiB to gs:// peaked at 225 MiB of RSS (61 idle);
with the threshold fixed at 4 MiB (which also ends the dynamic raising), at 136 MiB, at
the same speed. Buffers under 4 MiB (FUSE's 1 MiB requests) stay on the heaps, reused
(see TRIM_THRESHOLD).
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys

#: Buffers from this size up are mapped on their own and unmapped when freed ...
MMAP_THRESHOLD = 4 * 1024 * 1024
#: ... and free memory at the top of a heap is kept up to this (as glibc's dynamic rule
#: would: twice the mmap threshold). At its default, 128 KiB, the heap was cut back after
#: every 1 MiB buffer freed and faulted in again for the next: a cold read of 256 MiB
#: took 59,500 page faults instead of 2,350, and ran 10 to 20% slower.
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters

#: The global options of `fusestore` that take a value (they may precede the command).
_VALUED_OPTIONS = ("--log-level",)


def is_mount(argv: list[str]) -> bool:
    """Whether `fusestore ARGS` runs the `mount` command."""
    args = iter(argv)
    for arg in args:
        if arg in _VALUED_OPTIONS:
            next(args, None)
        elif not arg.startswith("-"):
            return arg == "mount"
    return False


def run_on_c_allocator() -> None:
    """Execute this very command again with `PYTHONMALLOC=malloc`, unless it is set
    (returns only then, or when the executable cannot be run again)."""
    script = sys.argv[0]
    if "PYTHONMALLOC" in os.environ or not sys.executable or script == "-c":
        return  # (`python -c`: a program that cannot be run again from its arguments)
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.origin == script:  # python -m fusestore, -m fusestore.cli.fstab
        module = spec.name.removesuffix(".__main__")
        command = [sys.executable, "-P", "-m", module, *sys.argv[1:]]
    else:  # an installed script: fusestore, mount.fusestore
        command = [sys.executable, "-P", script, *sys.argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, command, {**os.environ, "PYTHONMALLOC": "malloc"})
    except OSError:
        return  # runs on as it is: only the memory given back after big walks differs


def setup_daemon_process() -> None:
    """What a mount's daemon sets for itself first thing (see above)."""
    collect_cycles_lazily()
    map_big_buffers()


def map_big_buffers() -> None:
    """Have glibc map every buffer of `MMAP_THRESHOLD` bytes or more on its own, so that
    it goes back to the system when freed (see above); nothing where there is no glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def collect_cycles_lazily() -> None:
    """Start a cycle collection per 50,000 new objects rather than per 700 (see above)."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(50_000, older, oldest)

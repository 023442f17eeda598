"""A mount's daemon runs on the C library's allocator (`PYTHONMALLOC=malloc`).

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
"""

from __future__ import annotations

import os
import sys

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
    if "PYTHONMALLOC" in os.environ or not sys.executable:
        return
    script = sys.argv[0]
    if os.path.basename(script) == "__main__.py":  # python -m fusestore
        command = [sys.executable, "-P", "-m", "fusestore", *sys.argv[1:]]
    else:  # an installed script: fusestore, mount.fusestore
        command = [sys.executable, "-P", script, *sys.argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, command, {**os.environ, "PYTHONMALLOC": "malloc"})
    except OSError:
        return  # runs on as it is: only the memory given back after big walks differs

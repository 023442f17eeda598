"""The `fusestore` command line: one module per command group (`mount`, `stores`,
`control`, `cache`, `pin`), `common` for what several share, `app` for the group that
holds them all, `fstab` for mount(8)'s helper (`helper` installs it where mount(8) finds
it), `manpage` for fusestore(1), and `process` for how a mount's daemon process runs.
Outside this package only `__main__` imports it.

`run` is the `fusestore` executable; `main`, the command group, is what tests invoke.
"""

import sys

from .app import main
from .process import is_mount, run_on_c_allocator

__all__ = ["main", "run"]


def run() -> None:
    """The `fusestore` command; a mount first runs itself on the C allocator."""
    if is_mount(sys.argv[1:]):
        run_on_c_allocator()
    main()

"""The `fusestore` command line: one module per command group (`mount`, `stores`,
`control`, `cache`, `pin`), `common` for what several share, `app` for the group that
holds them all, and `fstab` for mount(8)'s helper. Nothing outside this package imports it.
"""

from .app import main

__all__ = ["main"]

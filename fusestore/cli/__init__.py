"""The `fusestore` command line: one module per command group (`mount`, `stores`,
`control`, `cache`, `pin`), `common` for what several share, `app` for the group that
holds them all, and `fstab` for mount(8)'s helper. Outside this package only `__main__`
imports it.
"""

from .app import main

__all__ = ["main"]

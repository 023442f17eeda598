"""How the core fails a request: `OSError` with a POSIX errno (see `fs_error`)."""

from __future__ import annotations

import os


def fs_error(code: int, detail: str = "") -> OSError:
    """The error a file-system operation raises: errno `code`, its text, and `detail`."""
    return OSError(code, os.strerror(code) + (f": {detail}" if detail else ""))

"""Free space on the cache disk, and how much clean data must give way for it.

`--cache-size` bounds the clean data the cache keeps, but the disk it lives on may be
smaller, or shared: so clean data is also evicted whenever the disk's free space falls
below a floor (`low_water`), until there is some slack above it again. File data never
takes the last `DISK_RESERVE` bytes (the journal's and index's room: with a full disk
even an unlink could not be journaled).
"""

from __future__ import annotations

import os
from pathlib import Path

MiB = 1024 * 1024
#: Free space on the cache disk that file data never takes: the journal's and index's.
DISK_RESERVE = 8 * MiB
#: The most the floor keeps free beyond the reserve (a twentieth of the disk up to this).
SLACK_MAX = 256 * MiB


def disk_space(path: Path) -> tuple[int, int]:
    """(free, total) bytes of the file system holding `path`, as an unprivileged
    process may use them. A statvfs: inline."""
    fs = os.statvfs(path)
    return fs.f_bavail * fs.f_frsize, fs.f_blocks * fs.f_frsize


def slack(total: int) -> int:
    return min(total // 20, SLACK_MAX)


def low_water(total: int) -> int:
    """Free space below which clean data is evicted."""
    return DISK_RESERVE + slack(total)


def shortfall(path: Path, wanted: int = 0) -> int:
    """Bytes of clean data to evict so that `wanted` more bytes can be written and the
    free space is back above the floor with some slack (0: nothing to evict)."""
    free, total = disk_space(path)
    left = free - wanted
    if left >= low_water(total):
        return 0
    return low_water(total) + slack(total) - left


def has_room(path: Path, size: int) -> bool:
    """Whether `size` bytes of file data fit without eating into the reserve."""
    free, _total = disk_space(path)
    return free - size >= DISK_RESERVE

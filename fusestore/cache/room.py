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


class DiskRoom:
    """The free space of the cache disk, as last measured less what the cache wrote since.

    A write asks `has_room`: while the estimate stays above the floor, the answer costs no
    system call (statvfs on every write took over half of a small write's time). Near the floor
    it measures again, every time. Space others take between two measures is not seen
    until the next one (the eviction pass measures every 2 s, and an eviction measures
    before and after); should they fill the disk meanwhile, the disk's own ENOSPC makes
    clean data give way all the same. Every method is inline; `measure` is one statvfs.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._free = 0
        self._total = 0
        #: bytes written to cache files since the last measure (overwrites too: an upper bound)
        self._spent = 0
        self.measure()

    def measure(self) -> None:
        self._free, self._total = disk_space(self.path)
        self._spent = 0

    def spent(self, size: int) -> None:
        """`size` bytes were written to cache files (they may have taken that much)."""
        self._spent += size

    @property
    def free(self) -> int:
        """The free space as far as the cache knows (measured, less what it wrote since)."""
        return self._free - self._spent

    def has_room(self, size: int) -> bool:
        """Whether `size` bytes of file data fit without eating into the reserve."""
        if self.free - size >= low_water(self._total):
            return True
        self.measure()
        return self.free - size >= DISK_RESERVE

    def shortfall(self, wanted: int = 0) -> int:
        """Bytes of clean data to evict so that `wanted` more bytes can be written and the
        free space is back above the floor with some slack (0: nothing to evict), by the
        estimate (`measure` first for an exact answer)."""
        left = self.free - wanted
        if left >= low_water(self._total):
            return 0
        return low_water(self._total) + slack(self._total) - left

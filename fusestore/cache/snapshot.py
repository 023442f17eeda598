"""What an upload sends: the bytes of a file at one instant, or nothing.

An upload takes a file's size on the trio thread and reads the bytes in a worker thread,
while writers go on changing the same cache file. Without a check, a write in between
makes the upload send bytes of a later version cut at the earlier size: an object that
never existed as a file (a torn conflict copy, or a torn object at the key until the next
upload replaced it).
"""

from __future__ import annotations


class SourceChanged(ValueError):
    """The file changed while its upload read it: nothing was stored; it goes up again."""


class Snapshot:
    """The first `size` bytes of a content as they were when `Content.snapshot` was
    called, for an upload to read.

    The content marks it `torn` before any write or truncate that reaches below `size`
    changes the file (appends past it do not), so `check`, called by the upload after
    the last byte was read and before the object is committed, knows whether what it read
    is that instant's bytes. Cheap and non-blocking; `check` may run in any thread.
    """

    def __init__(self, size: int, release: list[Snapshot]) -> None:
        self.size = size
        self.torn = False
        self._live = release

    def touched(self, start: int) -> None:
        """The content's bytes from `start` on are about to change."""
        if start < self.size:
            self.torn = True

    def check(self) -> None:
        """Raise SourceChanged when the bytes read may not be this snapshot's."""
        if self.torn:
            raise SourceChanged("the file changed while it was uploaded")

    def close(self) -> None:
        """The upload is over: later changes need not be watched for it."""
        if self in self._live:
            self._live.remove(self)

"""Staged uploads: the parts of a large file still being written, sent ahead of time.

When dirty space runs short, the flusher uploads the full parts of big files that are
still open as parts of a multipart upload that stays open; their bytes then no longer
count as dirty. The upload is completed when the file itself is uploaded, so the object
appears at once and whole, like any other upload. A write into a part already sent
takes that part back (it is sent again), which a generation number per part detects even
while the part is in flight.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..stores import CompletedPart, Store
from ..stores.base import MiB

#: The smallest part of every upload the flusher makes, whole or staged: boto3's own
#: default. Fewer requests than S3's 5 MiB minimum (256 MiB to moto: parts 1.7 → 1.4 s),
#: and 4 in flight per upload stay a small share of the daemon's memory (16 MiB parts
#: were no faster).
PART_SIZE = 8 * MiB


def upload_part_size(store: Store, size: int) -> int:
    """Parts for an object of `size` bytes: PART_SIZE, or larger where the store's
    limit on the number of parts needs it."""
    return max(PART_SIZE, store.part_size_for(size))


@dataclass(eq=False)
class StagedUpload:
    """A multipart upload of one content to `key`, with the parts sent so far.

    Plain data on the trio thread; the flusher does the store calls.
    """

    key: str
    upload_id: str
    part_size: int
    #: the file's metadata as sent (without the mtime); the upload carries `token` too
    metadata: dict[str, str]
    token: str
    #: part number -> the part as sent, for parts whose bytes did not change since
    parts: dict[int, CompletedPart] = field(default_factory=dict)
    generations: dict[int, int] = field(default_factory=dict)

    @staticmethod
    def part_size_for(store: Store, size: int) -> int:
        """Parts big enough that the file can still grow eightfold within the part limit."""
        return upload_part_size(store, min(size * 8, store.max_object_size))

    def changed(self, start: int, end: float) -> None:
        """Bytes [start, end) were written or cut off: the parts holding them go again."""
        if end <= start:
            return
        first = start // self.part_size + 1
        last = max(self.generations, default=first) if end == math.inf else math.ceil(end / self.part_size)
        for number in list(self.generations):
            if first <= number <= last:
                self.parts.pop(number, None)
                self.generations[number] += 1

    def generation(self, number: int) -> int:
        return self.generations.setdefault(number, 0)

    def full_parts_missing(self, size: int) -> list[int]:
        """Parts wholly below `size` that were not sent (or changed since)."""
        return [n for n in range(1, size // self.part_size + 1) if n not in self.parts]

    def sent(self, generation: int, part: CompletedPart) -> None:
        """The part went up; it counts unless it changed while it was in flight."""
        if self.generations.get(part.number) == generation:
            self.parts[part.number] = part

    @property
    def staged_bytes(self) -> int:
        return len(self.parts) * self.part_size

    def usable_for(self, key: str, metadata: Mapping[str, str], size: int, store: Store) -> bool:
        """Whether completing this upload gives the object `key` should now hold."""
        return (
            key == self.key
            and dict(metadata) == self.metadata
            and size > 0
            and math.ceil(size / self.part_size) <= store.max_parts
        )

    def parts_to_send(self, size: int) -> list[tuple[int, int, int]]:
        """(number, offset, length) of every part still to send for a file of `size` bytes."""
        count = math.ceil(size / self.part_size)
        todo = []
        for number in range(1, count + 1):
            offset = (number - 1) * self.part_size
            length = min(self.part_size, size - offset)
            if number not in self.parts or length < self.part_size:
                todo.append((number, offset, length))
        return todo

    def missing_parts(self, size: int) -> list[int]:
        """Parts of a file of `size` bytes not sent (or changed since they were)."""
        return [n for n in range(1, math.ceil(size / self.part_size) + 1) if n not in self.parts]

    def completed_parts(self, size: int) -> list[CompletedPart]:
        return [self.parts[n] for n in range(1, math.ceil(size / self.part_size) + 1)]

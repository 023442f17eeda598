"""Listing pages of the file driver in O(page size), from snapshots of directory scans.

A directory is read once per listing, not once per page: its sorted names (a snapshot)
are kept for the pages that follow and found again from the continuation token, which
stays the last name returned, so a page whose snapshot is gone rescans and is still
right. Only the entries of the page returned (and one look-ahead) are stat-ed and have
their attribute read.

Consistency is S3's: a listing shows every key that exists from its start to its end,
exactly once and in order; keys added or removed meanwhile come at most once. That
holds because a listing scans each directory afresh when it first reaches it (so it
never uses a snapshot older than itself), the held snapshot of a directory is always its
newest scan, and an entry gone since the scan is skipped when its page is built.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

from .base import ListPage, ObjectInfo
from .file_entries import lookup, lookup_in, read_attr
from .listing import Candidate, page_from

log = logging.getLogger(__name__)

RESERVED = ".fusestore"


def _usable(entry: os.DirEntry[str], directory: str) -> bool:
    """Whether a directory entry can be (or hold) objects: not the reserved folder, not a
    name that is not UTF-8 (no key can name it)."""
    if entry.name == RESERVED:
        return False  # ours, or that of a file store opened on a subdirectory
    try:
        entry.name.encode("utf-8")
    except UnicodeEncodeError:
        log.warning("skipping a name that is not UTF-8 in %s: %r", directory, entry.name)
        return False
    return True


def scan_names(path: str) -> list[str]:
    """The sorted names of one directory's regular files and sub-directories, the latter
    ending with '/' (so they sort as the keys below them do); [] when it is no directory.
    Symbolic links and special files are left out. Blocks on disk."""
    names: list[str] = []
    try:
        scan = os.scandir(path)
    except (FileNotFoundError, NotADirectoryError):
        return names
    with scan:
        for entry in scan:
            if not _usable(entry, path):
                continue
            # The type comes with the entry on most file systems: no stat per entry.
            if entry.is_dir(follow_symlinks=False):
                names.append(entry.name + "/")
            elif entry.is_file(follow_symlinks=False):
                names.append(entry.name)
    names.sort()  # code point order is UTF-8 byte order
    return names


class _Snapshot:
    __slots__ = ("names", "scan", "used")

    def __init__(self, names: list[str], scan: int, used: float) -> None:
        self.names = names
        self.scan = scan
        self.used = used


class DirSnapshots:
    """Scans of the directories that listings are in the middle of, for their next pages.

    Thread-safe. Holds at most `limit` snapshots, and drops older ones while they hold
    more than `max_names` names in all (the newest is kept whatever its size); a snapshot
    unused for `idle` seconds is dropped at the next call. `scan` blocks on disk, outside
    the lock; the other methods do not block.

    Whatever was dropped, a held snapshot of a directory is at least as new as every scan
    of it that was offered to `keep`: a listing that resumes in a directory it scanned
    itself never gets an older view of it.
    """

    def __init__(
        self,
        limit: int = 8,
        max_names: int = 500_000,
        idle: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.max_names = max_names
        self.idle = idle
        self._clock = clock
        self._lock = threading.Lock()
        self._held: OrderedDict[str, _Snapshot] = OrderedDict()
        self._names = 0
        self._scans = 0
        self._dropped = 0  # the newest scan dropped: no older one may be kept afterwards

    def scan(self, path: str) -> tuple[list[str], int]:
        """(sorted names, scan number) of a new scan of `path`; not kept."""
        with self._lock:
            self._scans += 1
            number = self._scans
        return scan_names(path), number

    def get(self, path: str) -> tuple[list[str], int] | None:
        """The held snapshot of `path` (marked used), or None."""
        with self._lock:
            now = self._clock()
            self._trim(now)
            held = self._held.get(path)
            if held is None:
                return None
            held.used = now
            self._held.move_to_end(path)
            return held.names, held.scan

    def keep(self, path: str, names: list[str], number: int) -> None:
        """Hold scan `number` of `path` for the next page, unless a newer one is held or
        a newer one was dropped (whose absence must not bring back an older view)."""
        with self._lock:
            now = self._clock()
            held = self._held.get(path)
            if held is not None and held.scan >= number:
                held.used = now
                self._held.move_to_end(path)
            elif held is not None or number >= self._dropped:
                self._drop(path)
                self._held[path] = _Snapshot(names, number, now)
                self._names += len(names)
            self._trim(now)

    def held(self) -> int:
        """How many snapshots are held (for tests)."""
        with self._lock:
            return len(self._held)

    def _drop(self, path: str) -> None:
        old = self._held.pop(path, None)
        if old is not None:
            self._names -= len(old.names)
            self._dropped = max(self._dropped, old.scan)

    def _trim(self, now: float) -> None:
        while self._held:
            path, oldest = next(iter(self._held.items()))
            crowded = len(self._held) > self.limit or (len(self._held) > 1 and self._names > self.max_names)
            if not crowded and now - oldest.used < self.idle:
                return
            self._drop(path)


def _nothing() -> ObjectInfo | None:
    return None


class FileLister:
    """Builds the listing pages of a file store rooted at `root`; thread-safe (its state
    is the snapshots). `page` blocks on disk."""

    def __init__(self, snapshots: DirSnapshots | None = None) -> None:
        self.snapshots = snapshots or DirSnapshots()

    def page(
        self,
        dir_key: str,
        dir_path: str,
        prefix: str,
        delimiter: str | None,
        token: str | None,
        max_keys: int,
    ) -> ListPage:
        """The page after `token` of the keys under `prefix`, whose directory part is
        `dir_key` (at `dir_path`)."""
        base = f"{dir_key}/" if dir_key else ""
        if delimiter == "/" and prefix == base and (token is None or token.startswith(base)):
            return self._directory_page(dir_key, dir_path, base, token, max_keys)
        # The scans this page uses, whatever the snapshots drop meanwhile.
        held: dict[str, tuple[list[str], int]] = {}
        recursive = delimiter != "/"

        def names_of(path: str, resume: bool) -> list[str]:
            """`path`'s names: a listing scans a directory afresh when it first reaches
            it, so it never uses a view older than itself; when it resumes there, the held
            snapshot is at least as new as its own scan."""
            got = held.get(path)
            if got is None:
                got = (self.snapshots.get(path) if resume else None) or self.snapshots.scan(path)
                held[path] = got
            return got[0]

        def walk(base: str, path: str, after: str, resume: bool) -> Iterator[Candidate]:
            """Candidates below `path` (keys `base`+name) from `base`+`after` on."""
            names = names_of(path, resume)
            start = bisect.bisect_left(names, after)
            head, slash, rest = after.partition("/")
            if recursive and slash and start and names[start - 1] == head + "/":
                # The listing is inside this sub-directory: go on there first.
                yield from walk(base + head + "/", os.path.join(path, head), rest, True)
            for index in range(start, len(names)):
                name = names[index]
                key = base + name
                if not name.endswith("/"):
                    yield key, _bind(lookup, key, os.path.join(path, name), False)
                    continue
                sub = os.path.join(path, name[:-1])
                if not recursive:
                    # Like S3, a prefix exists only while an object is below it: empty
                    # directories that other programs leave are not listed.
                    if self._has_object(sub):
                        yield key, _nothing
                    continue
                if read_attr(sub) is not None:
                    yield key, _bind(lookup, key, sub, True)
                yield from walk(key, sub, "", False)

        def seek(first: str) -> Iterator[Candidate]:
            if not first.startswith(base):
                return  # past every key under the directory
            if first == base and dir_key and read_attr(dir_path) is not None:
                yield base, _bind(lookup, base, dir_path, True)  # its own marker
            yield from walk(base, dir_path, first[len(base) :], token is not None)

        page = page_from(seek, prefix, delimiter, token, max_keys)
        if page.next_token is not None and page.next_token.startswith(base):
            # Keep the scans of the directories the next page resumes in: the one listed
            # and, recursively, those on the way down to the last key.
            paths = [dir_path]
            if recursive:
                for name in page.next_token[len(base) :].split("/")[:-1]:
                    paths.append(os.path.join(paths[-1], name))
            for path in paths:
                if path in held:
                    self.snapshots.keep(path, *held[path])
        return page

    def _directory_page(
        self, dir_key: str, dir_path: str, base: str, token: str | None, max_keys: int
    ) -> ListPage:
        """`page` of a whole directory with the delimiter (`ls`, a mount's readdir): the
        same page as `page_from` over `walk` makes, in one loop, at half its cost per
        entry (a cold walk of 150,000 files spent a quarter of its time in the walk)."""
        names, number = (self.snapshots.get(dir_path) if token is not None else None) or self.snapshots.scan(
            dir_path
        )
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        join = os.path.join
        last = token
        if token is None:
            start = 0
            if dir_key and read_attr(dir_path) is not None:
                marker = lookup(base, dir_path, True)  # the directory's own marker comes first
                if marker is not None:
                    objects.append(marker)
                    last = base
        else:
            start = bisect.bisect_right(names, token[len(base) :])
        limit = max(1, max_keys)
        try:
            dir_fd = os.open(dir_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return ListPage(objects, prefixes, None)  # gone since the scan
        try:
            for index in range(start, len(names)):
                name = names[index]
                key = base + name
                if name[-1] == "/":
                    # Like S3, a prefix exists only while an object is below it.
                    if not self._has_object(join(dir_path, name[:-1])):
                        continue
                    if len(objects) + len(prefixes) >= limit:
                        self.snapshots.keep(dir_path, names, number)
                        return ListPage(objects, prefixes, last)
                    prefixes.append(key)
                else:
                    info = lookup_in(dir_fd, dir_path, name, key)
                    if info is None:
                        continue  # gone since the scan
                    if len(objects) + len(prefixes) >= limit:
                        self.snapshots.keep(dir_path, names, number)
                        return ListPage(objects, prefixes, last)
                    objects.append(info)
                last = key
        finally:
            os.close(dir_fd)
        return ListPage(objects, prefixes, None)

    def _has_object(self, path: str) -> bool:
        """Whether any object lies at or below directory `path` (stops at the first)."""
        if read_attr(path) is not None:
            return True
        subdirs = []
        try:
            scan = os.scandir(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        with scan:
            for entry in scan:
                if not _usable(entry, path):
                    continue
                if entry.is_file(follow_symlinks=False):
                    return True
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
        return any(self._has_object(sub) for sub in subdirs)


def _bind(
    lookup: Callable[[str, str, bool], ObjectInfo | None], key: str, path: str, marker: bool
) -> Callable[[], ObjectInfo | None]:
    return lambda: lookup(key, path, marker)

"""All contents of one cache: creation, reuse across remounts, LRU eviction of clean data.

The index (diskcache) remembers every clean content by id with the object key and etag it
mirrors, so a remount reuses data whose etag still matches. Dirty contents are owned by the
journal instead and are never evicted. A clean copy of a version the store no longer
holds (a newer version of its key landed, the key was deleted) is dropped at once, or at
the last release of a handle still reading it: nothing could ask for it again, and
waiting for `--cache-size` to evict it let the cache grow to many times the live data.
A clean data file is removed before its index entry, never after: a crash between leaves
an entry without a file (dropped at the next mount), never a file no record names, which
the next mount could not tell from changes whose journal record was lost (see
`account_for_files`).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import diskcache

from . import room
from .content import Content
from .recovery import LostFound
from .writeout import sync_log

log = logging.getLogger(__name__)

#: Empty cache files kept ready for new contents (see "spare files" below) ...
SPARES = 64
#: ... made again in a batch once fewer than this are left.
SPARES_LOW = 32
#: Cache files kept open beyond those of open handles: a file is opened again in
#: microseconds, while holding one per cached file would exhaust the descriptor limit
#: (a service's soft limit is often 1024; `tar x` of 2000 files held 2000).
OPEN_FILES = 256


class ContentStore:
    """Creates, finds and evicts contents.

    Guarantees: a dirty or pinned (open) content is never evicted or dropped; clean
    contents are evicted least-recently-used first once `used` exceeds `limit`, or the
    cache disk's free space falls below its floor (see `room`); at most one clean content
    per key is kept past the release of its handles: the newest version registered (or
    moved there), and none once the store deleted the key. Every method runs
    inline (index look-ups and small writes); `evict_candidates`, `remove_files` and
    `forget` split an eviction so that the file removals can run in a worker thread
    (the core's eviction runs the three in turn).
    """

    def __init__(
        self, data_dir: Path, index: diskcache.Cache, limit: int, owned: frozenset[str] = frozenset()
    ) -> None:
        """`owned`: the data files the journal names (never taken for clean ones)."""
        self.data_dir = data_dir
        self.index = index
        self.limit = limit
        self._by_id: dict[str, Content] = {}
        self._by_object: dict[tuple[str, str], str] = {}
        self._object_of: dict[str, tuple[str, str]] = {}
        #: key → the content of the newest version of it registered (older ones superseded)
        self._by_key: dict[str, str] = {}
        self._dirty: dict[str, Content] = {}
        #: the sum of the dirty contents' sizes (kept up to date by them: `Content.tally`)
        self._dirty_total = [0]
        #: how many contents have their cache file open (kept up to date by them)
        self._open_files = [0]
        #: the free space of the cache disk (every content tells it what it writes)
        self.room = room.DiskRoom(data_dir)
        #: events that may have made a content evictable: a content became clean, lost its
        #: last pin (counted by the content), or lost its user pin
        self._evictable_changes = [0]
        #: `_evictable_changes` when an eviction took every content it could (None: not
        #: since the last change): until it changes, there is nothing to look for
        self._exhausted_at: int | None = None
        #: `close_idle_files` sweeps once more than this many are open
        self._sweep_above = OPEN_FILES
        #: empty cache files made ahead, by id, with an open descriptor each
        self._spares: list[tuple[str, int]] = []
        #: called (inline) when the spares run low
        self.on_spares_low: Callable[[], object] = lambda: None
        #: bumped by every clean content registered; `sync_index` compares it to skip work
        self._registered = 0
        self._registered_synced = 0
        #: whether the clean data of an object key is to be kept (pinned by the user)
        self.keeps: Callable[[str], bool] = lambda key: False
        self._load(owned)

    def all(self) -> list[Content]:
        """Every content this store knows of (clean, dirty, kept), in no order."""
        return list(self._by_id.values())

    def cached_objects(self) -> dict[tuple[str, str], Content]:
        """The clean contents by the object they mirror: (key, etag) → content."""
        return {obj: self._by_id[content_id] for obj, content_id in self._by_object.items()}

    def _map(self, content_id: str, key: str, etag: str) -> None:
        self._unmap(content_id)
        self._by_object[(key, etag)] = content_id
        self._object_of[content_id] = (key, etag)
        self._by_key.setdefault(key, content_id)

    def _map_newest(self, content: Content, key: str, etag: str) -> None:
        """Map `content` as the newest version of `key` in the store: any other version of
        it cached goes (see `_supersede`)."""
        self._map(content.id, key, etag)
        older = self._by_key.get(key)
        self._by_key[key] = content.id
        if older is not None and older != content.id:
            self._supersede(older)

    def _unmap(self, content_id: str) -> None:
        obj = self._object_of.pop(content_id, None)
        if obj is not None and self._by_object.get(obj) == content_id:
            del self._by_object[obj]
        if obj is not None and self._by_key.get(obj[0]) == content_id:
            del self._by_key[obj[0]]

    def _supersede(self, content_id: str) -> None:
        """The store no longer holds the version content `content_id` mirrors: its data
        goes now, or at the last release of the handles reading it. Never a dirty one."""
        content = self._by_id.get(content_id)
        if content is None or content.dirty:
            return
        if content.pins:
            content.superseded = True
            content.drop = self._drop_superseded
        else:
            self.discard(content)

    def _drop_superseded(self, content: Content) -> None:
        """A superseded content's last handle let go of it (called by the content)."""
        if self._by_id.get(content.id) is content and not content.dirty and not content.pins:
            self.discard(content)

    def _load(self, owned: frozenset[str]) -> None:
        """Clean contents left by the previous mount, checked against the files on disk.
        A file the journal owns is not clean, whatever an index rolled back may say."""
        for key in list(self.index.iterkeys()):
            if not (isinstance(key, tuple) and key[0] == "content"):
                continue
            record: dict[str, Any] | None = self.index.get(key)
            content_id = key[1]
            if content_id in owned:
                self.index.delete(key)
                continue
            path = self._path(content_id)
            if record is None or not path.exists() or path.stat().st_size != record["size"]:
                path.unlink(missing_ok=True)
                self.index.delete(key)
                continue
            content = self._content(content_id, record["size"], record["size"], int(record["present"], 16))
            content.atime = record["atime"]
            content.source = (record["key"], record["etag"])
            self._by_id[content_id] = content
            self._map(content_id, record["key"], record["etag"])

    def _path(self, content_id: str) -> Path:
        return self.data_dir / content_id

    def _content(self, content_id: str, size: int, base_size: int, present: int = 0) -> Content:
        content = Content(content_id, self._path(content_id), size, base_size, present)
        content.open_files = self._open_files
        content.evictable_changes = self._evictable_changes
        content.room = self.room
        return content

    def close_files(self) -> None:
        """Close every cache file (the mount is closing; a content opens its file again if
        used after all). Inline: a scan of the contents."""
        for content in self._by_id.values():
            content.close()

    def close_idle_files(self) -> None:
        """Once OPEN_FILES more cache files are open than the last sweep left (those of
        open handles), close the ones no handle uses. Inline: a scan of the contents, at
        most once per OPEN_FILES files opened, however many handles stay open."""
        if self._open_files[0] > self._sweep_above:
            for content in self._by_id.values():
                if not content.pins and content.is_open:
                    content.close()
            self._sweep_above = self._open_files[0] + OPEN_FILES

    def account_for_files(
        self,
        keep: set[str],
        lost_found: LostFound,
        *,
        removed: Collection[str] = (),
        index_lost: bool = False,
    ) -> list[str]:
        """Deal with the data files neither the index nor the journal (`keep`) knows, at
        startup. Empty ones (spare files) and those of files removed while open (`removed`:
        the journal says they hold no lost change) are deleted. Any other may hold changes
        whose journal record was lost (or was never written: a change is journaled up to
        2 s after it is made), so it is moved to `lost_found`, never deleted; also when
        the index was lost (`index_lost`), which makes most of them clean copies, but says
        nothing about any one of them. Returns the ids moved. Blocking (small)."""
        moved = []
        reason = (
            "the index was damaged and no journal record names it: a cached copy of an object, "
            "or changes of a file whose record was lost"
            if index_lost
            else "no journal or index record names it: changes of a file whose record was lost?"
        )
        for entry in os.scandir(self.data_dir):
            if entry.name in self._by_id or entry.name in keep:
                continue
            if entry.name in removed or entry.stat(follow_symlinks=False).st_size == 0:
                os.unlink(entry.path)
                continue
            lost_found.keep(Path(entry.path), key=None, reason=reason)
            moved.append(entry.name)
        return moved

    # -- finding and creating ---------------------------------------------------------

    def clean_for(self, key: str, etag: str, size: int) -> Content:
        """The clean content mirroring object `key` at `etag`, reused or new (and empty)."""
        content_id = self._by_object.get((key, etag))
        if content_id is not None:
            content = self._by_id[content_id]
            if content.size == size and not content.dirty:
                content.atime = time.time()
                kept = self.keeps(key)
                if content.kept and not kept:
                    self._evictable_changes[0] += 1
                content.kept = kept
                return content
            self._drop_object(key, etag)
        content = self.new(size, base_size=size)
        self.register_clean(content, key, etag)
        return content

    def new(self, size: int = 0, base_size: int = 0) -> Content:
        """A new content (dirty owners register it with the journal; clean ones via
        register_clean). It takes a spare file when one is ready, else its first use
        creates one."""
        if self._spares:
            content_id, fd = self._spares.pop()
            content = self._content(content_id, size, base_size)
            content.adopt_fd(fd)
            if len(self._spares) < SPARES_LOW:
                self.on_spares_low()
        else:
            content_id = uuid.uuid4().hex
            content = self._content(content_id, size, base_size)
            content.absent = True
        content.atime = time.time()
        content.indexed = False
        self._by_id[content_id] = content
        return content

    # -- spare files ------------------------------------------------------------------
    #
    # Creating a file can cost from 0.03 ms to over 1 ms on the same disk (measured on
    # ext4 under a VM), and `tar x` or `cp -r` makes one per file on the trio thread. So
    # empty cache files are made ahead, in batches in a worker thread, with their names
    # made durable there too; a new content takes one with no system call. Spares left by
    # a crash are orphans, removed at the next mount like any other.

    def spares_wanted(self) -> int:
        """How many spare files to make now (0 while enough are left)."""
        return SPARES - len(self._spares) if len(self._spares) < SPARES_LOW else 0

    def make_spares(self, count: int) -> list[tuple[str, int]]:
        """Create `count` empty cache files and make their names durable. Blocking: run
        it in a worker thread, then hand the result to `add_spares`."""
        made: list[tuple[str, int]] = []
        try:
            for _ in range(count):
                content_id = uuid.uuid4().hex
                fd = os.open(self._path(content_id), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                made.append((content_id, fd))
            self.sync_names()
        except OSError:
            self.drop_spares(made)
            raise
        return made

    def sync_names(self) -> None:
        """Make the names of the cache files made so far survive a power cut. Blocking."""
        fd = os.open(self.data_dir, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def add_spares(self, spares: list[tuple[str, int]]) -> None:
        self._spares.extend(spares)

    def drop_spares(self, spares: list[tuple[str, int]] | None = None) -> None:
        """Close and delete spare files (all of them by default). Small, inline."""
        if spares is None:
            spares, self._spares = self._spares, []
        for content_id, fd in spares:
            os.close(fd)
            self._path(content_id).unlink(missing_ok=True)

    def adopt(self, content_id: str, size: int, base_size: int, present: int) -> Content:
        """A dirty content named by the journal, after a restart."""
        content = self._content(content_id, size, base_size, present)
        content.mark_local_tail()
        content.dirty = True
        self._by_id[content_id] = content
        self._count_dirty(content)
        return content

    def register_clean(self, content: Content, key: str, etag: str) -> None:
        """Remember `content` as mirroring `key` at `etag` (it is then evictable when unpinned)."""
        content.dirty = False
        content.source = (key, etag)
        content.kept = self.keeps(key)
        self._evictable_changes[0] += 1
        self._uncount_dirty(content)
        old = self._by_object.get((key, etag))
        if old is not None and old != content.id:
            self.discard(self._by_id[old])
        self._map_newest(content, key, etag)
        self.save(content, key, etag)
        self._registered += 1

    def object_moved(self, source: tuple[str, str], key: str, etag: str) -> None:
        """The store copied object `source` (key, etag) to `key`, where it is `etag` now
        (a rename, or new attributes copied onto the object itself): its clean cached copy
        mirrors that copy from now on, and the older version of `key` cached goes."""
        content_id = self._by_object.get(source)
        if content_id is None:
            return
        content = self._by_id[content_id]
        content.source = (key, etag)
        content.superseded = False  # the bytes of a version the store holds (the copy)
        self._map_newest(content, key, etag)
        self.save(content, key, etag)
        self._registered += 1

    def key_deleted(self, key: str) -> None:
        """The store deleted `key`: no version of it cached can be asked for again."""
        content_id = self._by_key.get(key)
        if content_id is not None:
            self._supersede(content_id)

    def index_needs_sync(self) -> bool:
        return self._registered != self._registered_synced

    def sync_index(self) -> None:
        """Make the index's entries survive a power cut, when a clean content was registered
        since the last call. Blocking (fsync): in a worker thread, before the journal's
        sync. An uploaded file's data is then named by the index durably before the journal
        durably stops naming it, so a power cut cannot leave it named by neither (which
        the next mount could not tell from a file of lost changes), short of the journal
        reaching the disk earlier on its own (a checkpoint of SQLite's, every 1000 pages of
        its log, or the kernel's write-out): the file then waits in lost+found, never lost.
        A fetched copy's entry, written before its bytes, is durable within a persist too."""
        target = self._registered
        if target != self._registered_synced:
            sync_log(Path(self.index.directory))
            self._registered_synced = target

    def save(self, content: Content, key: str, etag: str) -> None:
        """Persist the block map of a clean content (after fetches, before unmount)."""
        if content.dirty or content.removed:
            return
        content.indexed = True
        self.index.set(
            ("content", content.id),
            {
                "key": key,
                "etag": etag,
                "size": content.size,
                "present": f"{content.present:x}",
                "atime": content.atime,
            },
        )

    def save_all(self) -> None:
        for content_id, (key, etag) in self._object_of.items():
            self.save(self._by_id[content_id], key, etag)

    def is_dirty(self, content: Content) -> bool:
        """Whether `content` is a dirty content of this store (not discarded)."""
        return self._dirty.get(content.id) is content

    def make_dirty(self, content: Content) -> None:
        """`content` now holds local changes: no longer a mirror of any object."""
        content.dirty = True
        content.superseded = False
        self._count_dirty(content)
        self._unmap(content.id)
        if content.indexed:
            self.index.delete(("content", content.id))
            content.indexed = False

    def _drop_object(self, key: str, etag: str) -> None:
        content_id = self._by_object.get((key, etag))
        if content_id is not None:
            self.discard(self._by_id[content_id])

    def forget_object(self, key: str, etag: str) -> None:
        """The object changed or went away: its clean data is worthless once no handle
        reads it (dropped now, or at the last release)."""
        content_id = self._by_object.get((key, etag))
        if content_id is not None:
            self._supersede(content_id)

    def discard(self, content: Content) -> None:
        """Remove a content and its file now (small unlink, inline)."""
        self._by_id.pop(content.id, None)
        self._uncount_dirty(content)
        self._unmap(content.id)
        content.remove()
        self.index.delete(("content", content.id))

    # -- accounting and eviction ------------------------------------------------------

    @property
    def used(self) -> int:
        return sum(c.present_bytes() for c in self._by_id.values())

    @property
    def dirty_bytes(self) -> int:
        return self._dirty_total[0]

    @property
    def kept_bytes(self) -> int:
        """Bytes of clean data kept for the pins (present or not yet fetched)."""
        return self.kept_bytes_except(lambda key: False)

    def kept_bytes_except(self, excluded: Callable[[str], bool]) -> int:
        """`kept_bytes`, without the objects whose keys `excluded` names."""
        return sum(
            self._by_id[content_id].size
            for content_id, (key, _etag) in self._object_of.items()
            if self._by_id[content_id].kept and not excluded(key)
        )

    def keep_again(self) -> None:
        """The pins changed (or were loaded): mark every clean content by whether it is
        kept now. In memory only: a flag derived from the pins is never stored, so a pin
        of a big tree costs no index write per file on the trio thread."""
        for content_id, (key, _etag) in self._object_of.items():
            self._by_id[content_id].kept = self.keeps(key)
        self._evictable_changes[0] += 1

    def _count_dirty(self, content: Content) -> None:
        if self._dirty.get(content.id) is not content:
            self._uncount_dirty(content)
            self._dirty[content.id] = content
            content.tally = self._dirty_total
            self._dirty_total[0] += content.size

    def _uncount_dirty(self, content: Content) -> None:
        if self._dirty.get(content.id) is content:
            del self._dirty[content.id]
        if content.tally is not None:
            content.tally[0] -= content.size
            content.tally = None

    def evict_candidates(self, wanted: int = 0) -> list[Content]:
        """Clean, unpinned contents to remove, oldest use first: enough to get back under
        90% of the limit, and to free what the cache disk lacks for `wanted` more bytes
        and its floor of free space (`room.shortfall`, by its last measure). Inline: a
        sum and a sort over every content, unless the last call took every content it
        could and none may have become evictable since (then none: a burst of writes
        failing on a full disk does not sort the contents once each)."""
        if self._exhausted_at == self._evictable_changes[0]:
            return []
        used = self.used
        target = self.limit * 9 // 10 if used > self.limit else used
        need = self.room.shortfall(wanted)
        if used <= target and need <= 0:
            return []
        chosen = []
        for content in sorted(self._by_id.values(), key=lambda c: c.atime):
            if used <= target and need <= 0:
                break
            if content.dirty or content.pins or content.kept:
                continue
            chosen.append(content)
            used -= content.present_bytes()
            need -= content.present_bytes()
        else:
            self._exhausted_at = self._evictable_changes[0]
        for content in chosen:
            self._by_id.pop(content.id, None)
            self._unmap(content.id)
            content.close()
        return chosen

    @staticmethod
    def remove_files(contents: list[Content]) -> None:
        """The blocking half of an eviction (run in a worker thread); `forget` follows."""
        for content in contents:
            content.remove()

    def forget(self, contents: list[Content]) -> None:
        """The last half of an eviction: the index entries of the files removed."""
        for content in contents:
            if content.id not in self._by_id:
                self.index.delete(("content", content.id))

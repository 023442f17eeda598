"""`Journaling`: the journal records of pending work — written, deferred, replayed.

A node with work for the store (data or attributes to upload, a directory marker to put
or delete) has one record in the journal; a restart rebuilds that work from the records
(`replay`). Records are written on the trio thread, inline (a SQLite transaction); the
persister makes them durable.
"""

from __future__ import annotations

import errno
import logging
import time
import uuid
from typing import Any

from ..cache import BLOCK_SIZE, Content, ContentStore, Journal
from ..cache.journal import Records
from ..cache.recovery import LostFound
from ..stores.links import LinkedStores
from ..stores.posix import decode_xattrs, encode_xattrs
from .linkview import in_link
from .namespace import Namespace
from .nodes import Kind, Node, now_ns
from .uploadqueue import UploadQueue

log = logging.getLogger(__name__)


class Journaling:
    """Keeps each node's journal record in step with its pending work.

    Owns the set of nodes whose record is left to the next persist (`record_unjournaled`).
    Everything here is synchronous, on the trio thread."""

    def __init__(
        self,
        journal: Journal,
        ns: Namespace,
        flusher: UploadQueue,
        links: LinkedStores | None,
        contents: ContentStore,
        lost_found: LostFound,
    ) -> None:
        self.journal = journal
        self.ns = ns
        self.flusher = flusher
        self.links = links
        self.contents = contents
        self.lost_found = lost_found
        self._unjournaled: set[Node] = set()  # records not written yet (deferred, or the disk was full)

    def record_if_room(self, node: Node, *, timestamps_later: bool = False) -> None:
        """`record`, for callers that cannot fail (close): on a full cache disk the record
        is written by the next `persist` instead (the change itself is in memory and
        goes up as usual). `timestamps_later`: see `record`."""
        try:
            self.record(node, timestamps_later=timestamps_later)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            log.warning("%s: not journaled yet: %s", node.path(), exc.strerror)

    def record(self, node: Node, *, timestamps_later: bool = False, size_now: bool = False) -> None:
        """Write (or drop) the journal record of `node`'s pending work. With
        `timestamps_later` (a close, an fsync), a record that would differ from the last one
        only in its mtime, or in what a restart reads from the cache file (a content's size
        and its blocks past the base), is left to the next full persist, within 2 s (the
        kernel sends a new mtime with the flush of every written file: a transaction per
        new file saved, and an fsync that waits for no journal flush). So the journal
        holds no record a full persist does not sync at once. `size_now` (an fsync): the
        record does hold the size, so that a restart can tell a cache file cut short (a
        file shorter than its record is set aside, never uploaded); a change of the size
        alone is written without making the journal's next sync wait for it."""
        self._apply(node, *self._plan(node, timestamps_later=timestamps_later, size_now=size_now))

    def _plan(
        self, node: Node, *, timestamps_later: bool, size_now: bool
    ) -> tuple[str, dict[str, Any] | None]:
        """What `record` does for `node` (see there), and the record it writes: "drop" (no
        work left: its record goes, if any), "same" (the last record says it all), "wait"
        (only what waits for the next full persist changed), "hint" or "save". Writes
        nothing (so a persist can tell whether it needs a transaction at all)."""
        if not node.attached or not self._has_work(node):
            return "drop", None
        content = node.content if node.data_dirty else None
        record = self._record_of(node)
        last = node.journaled
        if record == last:
            return "same", None  # a close after a write, an fsync after a setattr
        if timestamps_later and last is not None:
            waiting = {"mtime_ns", "ctime_ns", "atime_ns"}
            if node.data_dirty:
                # The meta_dirty a new mtime sets does not count while the data is to be
                # uploaded anyway (the upload carries every attribute).
                waiting.add("meta_dirty")
            if content is not None:
                # A restart takes the size from the cache file and needs only the base's
                # present blocks (`Content.base_mask`): a new file's writes need no
                # transaction of their own.
                mask = content.base_mask()
                if content.present & mask == int(last["present"], 16) & mask:
                    waiting |= {"size", "present"}
            if all(record[name] == last[name] for name in record if name not in waiting):
                # A change of the size is written now for a restart's check of the cache
                # file (`keep_if_cut_short`), as a hint: made durable by the next full
                # persist, so an fsync still waits for no journal flush.
                return ("hint" if size_now and record["size"] != last["size"] else "wait"), record
        return "save", record

    def _apply(self, node: Node, action: str, record: dict[str, Any] | None) -> None:
        """Carry out `_plan`'s `action` with its `record`."""
        if action == "drop":
            if node.jid is not None:
                self.journal.drop_node(node.jid)
                node.jid = None
                node.journaled = None
            self._unjournaled.discard(node)
            return
        if action == "same":
            self._unjournaled.discard(node)
            return
        assert record is not None
        self._unjournaled.add(node)  # until the record is written (the disk may be full)
        if action == "wait":
            return
        if node.jid is None:
            node.jid = uuid.uuid4().hex
        if action == "hint":
            self.journal.save_node(node.jid, record, hint=True)
            node.journaled = record
            return
        self.journal.save_node(node.jid, record)
        node.journaled = record
        self._unjournaled.discard(node)

    def _record_of(self, node: Node) -> dict[str, Any]:
        """The journal record of `node` as it is now."""
        content = node.content if node.data_dirty else None
        return {
            "kind": node.kind.value,
            "key": node.key,
            "perm": node.perm,
            "uid": node.uid,
            "gid": node.gid,
            "mtime_ns": node.mtime_ns,
            "ctime_ns": node.ctime_ns,
            "atime_ns": node.atime_ns,
            "xattrs": encode_xattrs(items) if (items := node.xattr_items()) else None,
            "size": node.size,
            "remote_key": node.remote_key,
            "etag": node.etag,
            "remote_size": node.remote_size,
            "data_dirty": node.data_dirty,
            "meta_dirty": node.meta_dirty,
            "content": content.id if content else None,
            "base_size": content.base_size if content else 0,
            "present": f"{content.present:x}" if content else "0",
            "target": node.target,
            "rdev": node.rdev,
            "explicit": node.explicit,
            "marker_key": node.marker_key,
            "overwrites": node.overwrites,
            # A move copies an object whose attributes were never read with its own metadata.
            "attrs_guessed": node.attrs_guessed,
            "parked": self.flusher.parked.reason(node),  # the store refuses its key: why
        }

    def before_cut(self, node: Node, content: Content, size: int) -> None:
        """`node`'s data `content` is about to be cut to `size` bytes (a truncation, a write
        the disk could not store). A record never states more than its cache file holds (a
        restart sets a file shorter than its record aside as damaged, `keep_if_cut_short`),
        and a kill can fall between the cut and the record that follows it: so a record
        naming `content` with a larger size is replaced first, in a transaction of its
        own, by the file as it is now but for the new size. A restart takes the size
        from the cache file: it finds the file as it was (its base and blocks are those
        of this record) or as cut (the base is cut at the file's end, see `_replay_node`).
        On a full disk the cut goes ahead all the same (a restart then keeps the file in
        lost+found)."""
        last = node.journaled
        if not node.attached or node.jid is None or last is None:
            return
        if last["content"] != content.id or last["size"] <= size or node.content is not content:
            return
        record = self._record_of(node)
        if record["content"] != content.id:
            return
        record["size"] = size
        try:
            self.journal.save_node(node.jid, record)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            log.warning("%s: cut before its record: %s", node.path(), exc.strerror)
            return
        node.journaled = record

    def _has_work(self, node: Node) -> bool:
        if node.is_dir:
            return self.marker_work(node) is not None
        return node.pending

    def marker_wanted(self, node: Node) -> bool | None:
        """Whether the store should hold a `dir/` marker for a directory; None: unknown yet.
        An explicit directory keeps one (see `Node.explicit`), any other while it is empty."""
        if node is self.ns.root or not node.attached:
            return False
        if node.explicit:
            return True  # the only place its mode and owner can be kept
        if node.listed_at == float("-inf"):
            return None
        # Keys below it that cannot be shown still make the prefix exist in the store.
        return not node.children and not self.ns.hidden.get(node.prefix)

    def marker_work(self, node: Node) -> str | None:
        """ "put" or "delete" when the directory's marker must change, else None."""
        if in_link(self.links, node):
            return None  # nothing is written to a linked store
        wanted = self.marker_wanted(node)
        if wanted is None:
            return None
        if wanted and (node.marker_key != node.prefix or node.meta_dirty):
            return "put"
        if not wanted and node.marker_key is not None:
            return "delete"
        return None

    def changed(self, node: Node, *, data: bool = False, meta: bool = False, journal: bool = True) -> None:
        """A local change to `node`: journal it and let the flusher upload it later.

        `journal=False` (a change the node's close, fsync or the next persist may record,
        within 2 s): no transaction now, unless the node has no record yet."""
        node.version += 1
        node.ctime_ns = now_ns()
        if data:
            node.data_version += 1
            node.data_dirty = True
        if meta:
            node.meta_dirty = True
        self.flusher.schedule(node)  # first: a journal on a full disk must not stall the upload
        if journal or node.jid is None:
            self.record(node)
        else:
            self._unjournaled.add(node)

    def record_unjournaled(self, *, timestamps_later: bool, recorded: Node | None = None) -> None:
        """Write the records left to a persist in one transaction: after a burst of new
        files, hundreds of them differ from the last only in size and mtime. Raises
        OSError(ENOSPC) while the disk is full, and then has written none of them.
        `recorded`: a node `record` was just called for with the same `timestamps_later`
        (nothing changed since: an fsync's own node), not looked at again."""
        nodes = [node for node in self._unjournaled if node is not recorded]
        if not nodes:
            return
        plans = [
            (node, self._plan(node, timestamps_later=timestamps_later, size_now=False)) for node in nodes
        ]
        if all(
            action in ("same", "wait") or (action == "drop" and node.jid is None)
            for node, (action, _) in plans
        ):
            # Nothing to write (an fsync's rewrite waits only for new timestamps): no
            # transaction, which costs more than the rest of an fsync's journal work.
            for node, (action, record) in plans:
                self._apply(node, action, record)
            return
        before = [(node, node.jid, node.journaled) for node in nodes]
        try:
            with self.journal.batch():
                for node, (action, record) in plans:
                    self._apply(node, action, record)
        except BaseException:
            for node, jid, journaled in before:  # rolled back: as if none was written
                node.jid, node.journaled = jid, journaled
                self._unjournaled.add(node)
            raise

    # -- a restart ---------------------------------------------------------------------

    def replay(self, opened: Records) -> int:
        """Rebuild pending work from the records the journal held at open (before the
        mount is ready). Returns its size."""
        records, deletes = opened.nodes, opened.deletes
        # Parents before children, so directories exist when their entries arrive.
        for jid, rec in sorted(records.items(), key=lambda item: item[1]["key"].count("/")):
            try:
                self._replay_node(jid, rec)
            except Exception:
                log.exception(
                    "journal record for %r could not be replayed; it stays in the journal", rec.get("key")
                )
        for key, etag in deletes.items():
            self.ns.deletes[key] = etag
            self.ns._shadow(key, +1)
        return len(records) + len(self.ns.deletes)

    def _replay_node(self, jid: str, rec: dict[str, Any]) -> None:
        if rec["content"] and self.lost_found.keep_if_cut_short(self.contents.data_dir / rec["content"], rec):
            self.journal.drop_node(jid)  # never uploaded as if whole
            return
        *dirs, name = rec["key"].split("/")
        parent = self.ns.root
        for dir_name in dirs:
            assert parent.children is not None
            child = parent.children.get(dir_name)
            if child is None or not child.is_dir:
                child = self.ns.new_node(
                    Kind.DIR,
                    dir_name,
                    parent,
                    self.ns.defaults.dir_perm,
                    self.ns.defaults.uid,
                    self.ns.defaults.gid,
                    now_ns(),
                )
                self.ns.attach(parent, dir_name, child)
            parent = child
        kind = Kind(rec["kind"])
        assert parent.children is not None
        old = parent.children.get(name)
        if old is not None and old.kind is kind and kind is Kind.DIR:
            node = old
            node.perm, node.uid, node.gid, node.mtime_ns = (
                rec["perm"],
                rec["uid"],
                rec["gid"],
                rec["mtime_ns"],
            )
        else:
            if old is not None:
                self.ns.detach(old)
            node = self.ns.new_node(kind, name, parent, rec["perm"], rec["uid"], rec["gid"], rec["mtime_ns"])
            self.ns.attach(parent, name, node)
        node.jid = jid
        node.size = rec["size"]
        node.remote_key, node.etag, node.remote_size = rec["remote_key"], rec["etag"], rec["remote_size"]
        node.data_dirty, node.meta_dirty = rec["data_dirty"], rec["meta_dirty"]
        node.target = rec["target"]
        node.rdev = rec.get("rdev", 0)
        node.ctime_ns = rec.get("ctime_ns") or node.mtime_ns
        node.atime_ns = rec.get("atime_ns")
        xattrs = decode_xattrs(rec.get("xattrs"))
        node.xattrs = dict(xattrs) if xattrs else None
        node.explicit, node.marker_key = rec["explicit"], rec["marker_key"]
        node.overwrites = rec.get("overwrites")
        node.attrs_guessed = rec.get("attrs_guessed", False)
        if kind is Kind.DIR:
            node.listed_at = time.monotonic()
        if rec["content"]:
            path = self.contents.data_dir / rec["content"]
            size = path.stat().st_size if path.exists() else 0
            base_size, present = rec["base_size"], int(rec["present"], 16)
            if base_size > size:
                # Cut since its record was written (`before_cut`): the bytes past the end
                # are gone for good, as `Content.truncate` has it.
                base_size = size
                present &= (1 << -(-size // BLOCK_SIZE)) - 1
            content = self.contents.adopt(rec["content"], size, base_size, present)
            if node.remote_key and node.etag:
                content.source = (node.remote_key, node.etag)
            node.content = content
            node.size = size
        self.ns.track_move(node)
        self.flusher.schedule(node, delay=0)

    def account_for_files(self, opened: Records, index_rebuilt: bool) -> None:
        """After `replay`: data files no record of `opened` names are removed when surely
        clean, else set aside in lost+found (see `ContentStore.account_for_files`).
        Blocking (small)."""
        moved = self.contents.account_for_files(
            opened.content_ids(), self.lost_found, removed=opened.unlinked, index_lost=index_rebuilt
        )
        for content_id in opened.unlinked:
            self.journal.drop_unlinked(content_id)
        if moved:
            log.error(
                "%d cache file(s) no journal or index record names were kept in %s (fusestore cache recover)",
                len(moved),
                self.lost_found.path,
            )

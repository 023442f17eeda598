"""Uploads whose outcome this mount has not recorded: each carries a token, so that the
mount knows its own write when it meets it in the store.

Every upload of a file (its data, a symlink's target, or a copy for a rename) sends a
random token as the object's metadata `x-amz-meta-fusestore-upload`, and the journal
holds the token, the key and the file's journal id from before the request goes out until
the result is recorded (in the same transaction as the file's own record). A copy that
keeps its source's metadata (never read here) is known by the source's etag instead.

An answer can fail to arrive although the store took the write: the daemon was killed,
or the connection broke after the server acted (and the client's own retry then meets the
new object). Without the token the mount would take its own object for another client's
(a false conflict copy), or — when the file was renamed or removed meanwhile — leave it
in the store, where the next listing brings the old name back.

Such an upload is "unsettled": its key is hidden from listings (as a key to delete is)
until the flusher has asked the store (one HEAD) whether the object there carries the
token. If it does, the write landed: a file still at that key is based on it from then on
(its next upload replaces it, conditioned on it), and an object no file needs any more is
deleted. If not, nothing of it landed, or another client wrote since; the usual rules
apply; but the upload is kept in mind as "late" all the same: a store can still be
working on a request whose client died (its body all sent), and take it after that HEAD.
Should a later upload of the key then find its condition failed on an object carrying a
late token, that object is this mount's own write, not another client's: the file is
based on it (as on one that landed in time) and the upload goes again, with no conflict
copy. A late token ends once a newer upload of its key lands. Plain bookkeeping here,
synchronous, on the trio thread; the flusher does the HEAD.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..cache import Journal
from ..core.namespace import Namespace
from ..core.nodes import Node
from ..stores import AccessDenied, AlreadyExists, InvalidKey, NotFound, ObjectInfo, PreconditionFailed
from ..stores.posix import UPLOAD_TOKEN

#: The metadata name of the token (`x-amz-meta-fusestore-upload` on S3).
TOKEN = UPLOAD_TOKEN

log = logging.getLogger(__name__)

#: Failures after which the store holds nothing of the upload: it refused it, or the
#: cache file changed while it was read (nothing was completed).
NOT_LANDED = (PreconditionFailed, AlreadyExists, NotFound, AccessDenied, InvalidKey, ValueError)


@dataclass
class Landing:
    """One upload of `key` carrying `token`, made for the file with journal id `jid`
    (`node`: that file, while this mount runs)."""

    token: str
    key: str
    jid: str | None
    #: for a copy: the etag of its source (a copy of an object whose metadata is not
    #: known here keeps that metadata, without a token; S3 gives it the source's etag)
    copy_of: str | None = None
    node: Node | None = None
    #: sent with no condition on the object it replaces (a copy, or the upload of a file
    #: onto a key this mount let go of): a newer upload landing first does not stop it
    unconditioned: bool = False

    def record(self, *, late: bool = False) -> dict[str, Any]:
        """Its journal record."""
        record: dict[str, Any] = {"key": self.key, "jid": self.jid, "copy_of": self.copy_of}
        if self.unconditioned:
            record["unconditioned"] = True
        if late:
            record["late"] = True
        return record

    def sent_by(self, node: Node) -> bool:
        """Whether `node` is the file that sent it (after a restart: by its journal id)."""
        if node.is_dir:
            return False
        return node is self.node or (self.node is None and self.jid is not None and node.jid == self.jid)

    def carried_by(self, info: ObjectInfo | None) -> bool:
        """Whether the object `info` (None: no object) is this upload's."""
        if info is None:
            return False
        return (info.metadata or {}).get(TOKEN) == self.token or (
            self.copy_of is not None and info.etag == self.copy_of
        )


class Landings:
    """The uploads of this mount whose outcome is not recorded, and the unsettled ones
    among them (see the module docstring). Every method is synchronous and cheap (a small
    journal transaction at most)."""

    def __init__(self, journal: Journal, ns: Namespace, journaled: dict[str, dict[str, Any]]) -> None:
        """`journaled`: the landing records the journal held when it was opened."""
        self.journal = journal
        self.ns = ns
        self.pending: dict[str, Landing] = {
            token: Landing(
                token,
                str(record["key"]),
                record.get("jid"),
                record.get("copy_of"),
                unconditioned=bool(record.get("unconditioned")) or record.get("copy_of") is not None,
            )
            for token, record in journaled.items()
        }
        #: tokens whose upload may have landed: the run that sent them ended, or their
        #: answer failed to come
        self.unsettled: set[str] = set()
        #: tokens found not landed when asked, whose request the store may still take
        #: (journaled so: a restart does not ask again, nor hide their keys meanwhile)
        self.late: set[str] = {token for token, record in journaled.items() if record.get("late")}
        for token in self.pending:
            if token not in self.late:
                self.doubt(token)

    def begin(self, key: str, node: Node, copy_of: str | None = None) -> str:
        """An upload (`copy_of`: a copy of the object with that etag) of `node` to `key`
        is about to go out: the token it carries."""
        token = uuid.uuid4().hex
        landing = Landing(token, key, node.jid, copy_of, node, unconditioned=copy_of is not None)
        try:
            self.journal.add_landing(token, landing.record())
        except OSError as exc:
            # A full cache disk must not stop the uploads that free it; only a crash
            # before this upload's answer would then go unrecognised.
            if exc.errno != errno.ENOSPC:
                raise
        self.pending[token] = landing
        log.debug("landing %s: an upload of %r to %r begins", token, node.jid, key)
        return token

    def end(self, token: str) -> None:
        """The upload's outcome is recorded (or it is known not to have landed)."""
        landing = self.pending.pop(token, None)
        if landing is None:
            return
        log.debug("landing %s: ends", token)
        self.journal.drop_landing(token)
        self.late.discard(token)
        if token in self.unsettled:
            self.unsettled.discard(token)
            self.ns.hide(landing.key, -1)

    def landed(self, key: str, token: str) -> None:
        """The upload carrying `token` is recorded as the object at `key`: so are the
        unsettled and late ones there before it (it replaced them, or they can no longer
        land: their condition fails on it), but for those sent with no condition, which
        a store still working on them may yet finish: they are kept in mind as late."""
        self.end(token)
        for earlier in [t for t in self.unsettled | self.late if self.pending[t].key == key]:
            if self.pending[earlier].unconditioned:
                self.not_there(earlier)
            else:
                self.end(earlier)

    def unconditioned(self, token: str) -> None:
        """The upload carrying `token` goes with no condition on what it replaces."""
        landing = self.pending.get(token)
        if landing is None or landing.unconditioned:
            return
        landing.unconditioned = True
        try:
            self.journal.add_landing(token, landing.record(late=token in self.late))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise

    @contextlib.contextmanager
    def attempt(self, key: str, node: Node, copy_of: str | None = None) -> Iterator[str]:
        """`begin`, then `end` when the store refused the upload or the body returns (the
        body calls `landed` itself, in the transaction that records the result); any other
        failure leaves it unsettled."""
        token = self.begin(key, node, copy_of)
        try:
            yield token
        except NOT_LANDED:
            self.end(token)
            raise
        except BaseException:
            self.doubt(token)
            raise
        self.end(token)

    def doubt(self, token: str) -> None:
        """The upload may have landed, or not: it is settled before the next upload."""
        if token in self.pending and token not in self.unsettled:
            log.debug("landing %s: unsettled (%r)", token, self.pending[token].key)
            self.unsettled.add(token)
            self.ns.hide(self.pending[token].key, +1)

    def not_there(self, token: str) -> None:
        """The store did not hold the upload when asked: settled, but kept as late (the
        store may still take it)."""
        landing = self.pending.get(token)
        if landing is None:
            return
        log.debug("landing %s: not in the store, kept as late", token)
        if token in self.late:
            return
        try:
            self.journal.add_landing(token, landing.record(late=True))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise  # on a full disk a restart asks again: only a HEAD more
        self.late.add(token)
        if token in self.unsettled:
            self.unsettled.discard(token)
            self.ns.hide(landing.key, -1)

    def late_at(self, key: str, info: ObjectInfo | None) -> Landing | None:
        """The late upload of this mount's that the object `info` at `key` is, if any."""
        for token in sorted(self.late):
            landing = self.pending[token]
            if landing.key == key and landing.carried_by(info):
                return landing
        return None

    def to_settle(self) -> list[Landing]:
        return [self.pending[token] for token in sorted(self.unsettled)]

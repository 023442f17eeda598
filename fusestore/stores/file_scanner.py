"""`ListingHelper`: the file store's listing pages built in a helper process.

A page of a directory costs a `stat` and an attribute read per entry. Made in a worker
thread of the daemon, each of those system calls gives the interpreter lock up and waits
to take it back from the trio thread, which is busy answering the kernel meanwhile: a cold
`find` of 150,000 files spent most of its time in that hand-over, on one core. The helper
process builds the pages (`FileLister`, its directory snapshots included) on the other
core, so the daemon merges one directory while the next is scanned, and the mount may
list a walk's next directories ahead (`Store.lists_ahead`).

The helper is one process for all the file stores of this process (a page names its
root), started at the first page and ended when this process ends or its socket closes
(the helper exits when the daemon is gone, even after kill -9). Should it fail to start
or die, `page` raises `HelperGone` and the store lists in its own process: pages are
the same either way; a listing that resumes in a fresh helper rescans its directory.

Run as `python -m fusestore.stores.file_scanner FD`: serves pages on socket FD until EOF.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from multiprocessing.connection import Connection
from typing import Any

from .base import ListPage, ObjectInfo
from .file_listing import FileLister

#: Seconds the helper may take to start before pages are built in this process instead.
START_TIMEOUT = 20.0
#: Stores whose snapshots the helper keeps (one per mount; more in a test run).
ROOTS_KEPT = 16
#: Seconds a page built ahead is good for: a listing that comes back later gets a new one.
AHEAD_FRESH = 1.0

#: (dir_key, dir_path, prefix, delimiter, token, max_keys): `FileLister.page`'s arguments.
PageArgs = tuple[str, str, str, "str | None", "str | None", int]


def _environment() -> dict[str, str]:
    """This process's environment, with the directory this package was imported from
    first on the helper's import path: the helper runs this very code, installed or not."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": package_parent + (os.pathsep + path if path else "")}


class HelperGone(Exception):
    """The helper process could not be started or stopped answering."""


def _pack(page: ListPage) -> tuple[Any, ...]:
    """A page as plain columns: pickling an ObjectInfo per object costs five times more."""
    objects = page.objects
    return (
        [o.key for o in objects],
        [o.size for o in objects],
        [o.etag for o in objects],
        [o.mtime for o in objects],
        [o.metadata for o in objects],
        page.prefixes,
        page.next_token,
    )


def _unpack(packed: tuple[Any, ...]) -> ListPage:
    keys, sizes, etags, mtimes, metadata, prefixes, token = packed
    objects = [ObjectInfo(*fields) for fields in zip(keys, sizes, etags, mtimes, metadata, strict=True)]
    return ListPage(objects, prefixes, token)


class ListingHelper:
    """The client of the helper process. Thread-safe: one page at a time (a lock), each a
    request and its answer on one socket. `page` blocks (starting the helper, then until
    the page is built): call it from a worker thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None
        self._owner = 0  # the pid that started the helper: a forked child starts its own

    def page(self, root: str, args: PageArgs) -> ListPage:
        """The page `FileLister.page(*args)` builds for the store at `root`. Raises what
        building it raised (OSError), or HelperGone."""
        with self._lock:
            connection = self._connected()
            try:
                connection.send((root, args))
                ok, value = connection.recv()
            except (OSError, EOFError) as exc:
                self._stop()
                raise HelperGone(f"the listing helper process stopped answering: {exc}") from exc
        if not ok:
            raise value
        return _unpack(value)

    def close(self) -> None:
        """End the helper (it also ends by itself when this process does)."""
        with self._lock:
            self._stop()

    def _connected(self) -> Connection:
        if self._connection is not None and self._owner == os.getpid():
            return self._connection
        self._connection = self._process = None  # inherited across a fork: not ours
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                # Nothing of the daemon's: a caller reading the output of a background
                # mount to its end would wait for the unmount, and a working directory
                # held would keep its file system busy. Errors come back on the socket.
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
                env=_environment(),
                close_fds=True,
            )
        except OSError as exc:
            ours.close()
            raise HelperGone(f"the listing helper process did not start: {exc}") from exc
        finally:
            theirs.close()
        connection = Connection(ours.detach())
        try:
            if not connection.poll(START_TIMEOUT) or connection.recv() != "ready":
                raise EOFError("no greeting")
        except (OSError, EOFError) as exc:
            connection.close()
            process.kill()
            process.wait()
            raise HelperGone(f"the listing helper process did not start: {exc}") from exc
        self._process, self._connection, self._owner = process, connection, os.getpid()
        return connection

    def _stop(self) -> None:
        connection, process = self._connection, self._process
        self._connection = self._process = None
        if connection is not None:
            connection.close()  # the helper reads EOF and exits
        if process is not None and self._owner == os.getpid():
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


#: The helper of this process, shared by its file stores.
HELPER = ListingHelper()


class _Server:
    """The helper's side: the listers of the stores asked about, and the page after the
    last one answered, built while nothing else is asked (the store's next page is ready
    when the daemon, having merged the last, asks for it)."""

    def __init__(self) -> None:
        self.listers: OrderedDict[str, FileLister] = OrderedDict()
        #: (root, args) of the page built ahead, what it gave, and when it was built
        self.ahead: tuple[tuple[str, PageArgs], tuple[bool, Any], float] | None = None

    def answer(self, root: str, args: PageArgs) -> tuple[bool, Any]:
        ahead, self.ahead = self.ahead, None
        if ahead is not None and ahead[0] == (root, args) and time.monotonic() - ahead[2] < AHEAD_FRESH:
            return ahead[1]
        return self.build(root, args)

    def build(self, root: str, args: PageArgs) -> tuple[bool, Any]:
        lister = self.listers.pop(root, None) or FileLister()
        self.listers[root] = lister
        if len(self.listers) > ROOTS_KEPT:
            self.listers.popitem(last=False)
        try:
            return True, _pack(lister.page(*args))
        except Exception as exc:  # the store maps OSError; anything else is its bug to log
            return False, exc

    def build_next(self, root: str, args: PageArgs, answer: tuple[bool, Any]) -> None:
        """Build the page that follows `answer`, the page `args` asked, if there is one.
        It is as consistent as if asked now: it is built after the page before was."""
        ok, packed = answer
        if ok and packed[-1] is not None:
            following = (*args[:4], packed[-1], args[5])
            self.ahead = ((root, following), self.build(root, following), time.monotonic())


def serve(fd: int) -> None:
    """The helper's loop: build each page asked for on socket `fd` until it closes."""
    # Ctrl-C reaches the whole foreground group; the daemon decides when listing ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    connection = Connection(fd)
    server = _Server()
    connection.send("ready")
    while True:
        try:
            root, args = connection.recv()
        except (EOFError, OSError):
            return
        reply = server.answer(root, args)
        try:
            connection.send(reply)
        except (EOFError, OSError):
            return
        except Exception as exc:  # an exception that does not pickle
            connection.send((False, OSError(f"{type(exc).__name__}: {exc}")))
        if not connection.poll(0):
            server.build_next(root, args, reply)


if __name__ == "__main__":
    serve(int(sys.argv[1]))

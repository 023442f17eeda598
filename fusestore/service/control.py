"""The control channel: how `fusestore status|flush|umount` and the Python API talk to a
running daemon.

A unix stream socket next to the mount's registry entry (`/run/fusestore/<id>.sock` for
root, `$XDG_RUNTIME_DIR/fusestore/<id>.sock` otherwise). The directory is 0700 and the
socket 0600, and every connection is checked with SO_PEERCRED: only the user who mounted
and root may talk to the daemon. The client checks the other way round: it connects only
through a directory private to the mount's user (see `private`), and believes only a
daemon run by that user or root (SO_PEERCRED of the server), so no other user can stand
in for a daemon. One request per connection, one JSON object per line. The daemon answers
through `control_commands`, whose `COMMANDS` table has one handler per command:

- `{"cmd": "status"}` → one status object (`control_commands.MountStatus`, as JSON).
- `{"cmd": "flush"}` → progress objects (`{"progress": {...}}`) every `interval` seconds
  until nothing is dirty, then `{"done": true, "status": {...}}`. The client may hang up
  at any time; uploads go on regardless.
- `{"cmd": "unmount", "sync": true}` → the same progress while the daemon syncs, then it
  unmounts and the connection closes. With `"sync": false` it unmounts at once and keeps
  what is not uploaded in its journal for the next mount.

An error is `{"error": "one line"}`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import trio

from ..private import UnsafeDirectory, private_dir

log = logging.getLogger(__name__)

#: Largest request accepted (requests are a few dozen bytes).
MAX_REQUEST = 4096


class ControlError(RuntimeError):
    """The daemon could not be reached, or refused the request; the message says why."""


class ControlTimeout(ControlError):
    """The caller's timeout passed before the daemon finished (it carries on)."""


class ControlUntrusted(ControlError):
    """The socket is not one the mount's daemon alone could have made: its directory is
    not private to the mount's user, or the process behind it runs as another user."""


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


Handler = Callable[[dict[str, Any], Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


class ControlServer:
    """Serves the control socket of one daemon on trio. `serve` runs until cancelled;
    each request runs `handler(request, send)` in its own task."""

    def __init__(self, path: Path, handler: Handler, owner_uid: int | None = None) -> None:
        self.path = path
        self.handler = handler
        self.owner_uid = os.geteuid() if owner_uid is None else owner_uid

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        private_dir(self.path.parent, "the control socket's directory", "remove it and mount again")
        self.path.unlink(missing_ok=True)
        listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is born 0600: no window for others
        try:
            await listener.bind(str(self.path))
        finally:
            os.umask(old_umask)
        listener.listen(16)
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    conn, _ = await listener.accept()
                    nursery.start_soon(self._connection, trio.SocketStream(conn))
        finally:
            listener.close()
            self.path.unlink(missing_ok=True)

    async def _connection(self, stream: trio.SocketStream) -> None:
        async def send(message: dict[str, Any]) -> None:
            await stream.send_all(json.dumps(message).encode() + b"\n")

        try:
            uid = peer_uid(stream.socket)  # type: ignore[arg-type]
            if uid not in (self.owner_uid, 0):
                log.warning("control: refused a request from uid %d (not the mount's owner)", uid)
                await send({"error": "permission denied: only the user who mounted and root may control it"})
                return
            request = await self._read_request(stream)
            if request is None:
                await send({"error": "a request is one JSON object on one line"})
                return
            await self.handler(request, send)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client hung up; whatever it asked for goes on
        finally:
            await stream.aclose()

    @staticmethod
    async def _read_request(stream: trio.SocketStream) -> dict[str, Any] | None:
        data = b""
        while b"\n" not in data and len(data) < MAX_REQUEST:
            chunk = await stream.receive_some(MAX_REQUEST)
            if not chunk:
                break
            data += chunk
        try:
            request = json.loads(data.split(b"\n", 1)[0])
        except ValueError:
            return None
        return request if isinstance(request, dict) and isinstance(request.get("cmd"), str) else None


class ControlClient:
    """Talks to the daemon behind a socket path (blocking; for the CLI and the API)."""

    def __init__(self, path: str | os.PathLike[str], timeout: float | None = 10.0) -> None:
        self.path = str(path)
        self.timeout = timeout

    def request(self, cmd: str, **args: Any) -> Iterator[dict[str, Any]]:
        """Send one request; yields each answer line until the daemon closes the connection.
        Raises ControlError when the daemon cannot be reached or answers with an error."""
        owner = self._directory_owner()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(self.path)
            except FileNotFoundError:
                raise ControlError("no daemon is listening (it is not running)") from None
            except ConnectionRefusedError:
                raise ControlError("the daemon does not answer (it is not running)") from None
            except PermissionError:
                raise ControlError(
                    "permission denied: only the user who mounted and root may control it"
                ) from None
            server = peer_uid(sock)
            if server not in (owner, 0):
                raise ControlUntrusted(
                    f"the control socket {self.path} is served by uid {server}, not by the mount's "
                    f"user (uid {owner}) or root: not a daemon of yours; nothing was sent"
                )
            sock.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
            with sock.makefile("rb") as answers:
                for line in answers:
                    message: dict[str, Any] = json.loads(line)
                    if "error" in message:
                        raise ControlError(str(message["error"]))
                    yield message
        except TimeoutError:
            raise ControlTimeout(f"the daemon did not finish within {self.timeout:g}s") from None
        finally:
            sock.close()

    def _directory_owner(self) -> int:
        """The user whose daemon may serve the socket: this user, whose directory it must be
        in; for root, whoever owns the (otherwise private) directory. ControlUntrusted else."""
        directory = Path(self.path).parent
        try:
            owners = {os.lstat(directory).st_uid} if os.geteuid() == 0 else None
            private_dir(
                directory, "the control socket's directory", "nothing was sent", create=False, owners=owners
            )
        except UnsafeDirectory as exc:
            raise ControlUntrusted(str(exc)) from None
        except OSError:
            raise ControlError("no daemon is listening (it is not running)") from None
        return os.lstat(directory).st_uid

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        """A request with a single answer (`status`)."""
        for message in self.request(cmd, **args):
            return message
        raise ControlError("the daemon closed the connection without answering")

    def follow(
        self, cmd: str, on_progress: Callable[[dict[str, Any]], None] | None = None, **args: Any
    ) -> dict[str, Any] | None:
        """A request answered by progress lines (`flush`, `unmount`): each goes to
        `on_progress`; returns the final message, or None once the daemon hung up."""
        for message in self.request(cmd, **args):
            if "progress" not in message:
                return message
            if on_progress is not None:
                on_progress(message["progress"])
        return None

    def flush(self, on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Upload everything now; returns the final status once the store holds every
        change. ControlError if the daemon stopped first or some item cannot be uploaded
        (a name the store refuses), ControlTimeout after `timeout`."""
        final = self.follow("flush", on_progress)
        if final is None or final["status"]["dirty_items"]:
            raise ControlError("the daemon stopped before everything was uploaded")
        status: dict[str, Any] = final["status"]
        refused = int(status.get("not_uploadable") or 0)
        if refused:
            raise ControlError(
                f"everything else is uploaded, but {refused} item(s) cannot be uploaded "
                "(the store refuses the name: rename it); `fusestore status` names them"
            )
        return status

"""The mountpoint side of a mount: checks before mounting, stale mounts, and the
registry through which `fusestore umount` finds the daemon of a mountpoint."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..private import UnsafeDirectory, private_dir


class MountpointError(ValueError):
    """The mountpoint cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class MountEntry:
    """One line of the mount table."""

    mountpoint: str
    device: str  # major:minor
    fstype: str  # `fuse.fusestore` for ours
    source: str = ""  # for ours: the store's URL


def mount_table() -> list[MountEntry]:
    """The mounts this process can see, in /proc/self/mountinfo order (the last one listed
    at a path is on top); empty when the table cannot be read."""
    entries = []
    try:
        with open("/proc/self/mountinfo") as table:
            for line in table:
                fields, _, tail = line.partition(" - ")
                points = fields.split()
                if len(points) > 4 and tail:
                    fstype, source, *_ = [*tail.split(), ""]
                    entries.append(MountEntry(_unescape(points[4]), points[2], fstype, _unescape(source)))
    except OSError:
        pass
    return entries


def _on_top(target: str) -> MountEntry | None:
    found = [entry for entry in mount_table() if entry.mountpoint == target]
    return found[-1] if found else None


def is_mounted(path: str | os.PathLike[str]) -> bool:
    """Whether a file system is mounted at `path`."""
    return _on_top(os.path.realpath(path)) is not None


def mount_source(path: str | os.PathLike[str]) -> str | None:
    """The source of the file system mounted at `path` (for ours, the store's URL), or None."""
    entry = _on_top(os.path.realpath(path))
    return entry.source if entry else None


def mount_type(path: str | os.PathLike[str]) -> str | None:
    """The type of the file system mounted at `path` (`fuse.fusestore` for ours), or None."""
    entry = _on_top(os.path.realpath(path))
    return entry.fstype if entry else None


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return field.encode().decode("unicode_escape") if "\\" in field else field


def lazy_unmount(path: str | os.PathLike[str]) -> None:
    """Detach a FUSE mount (works for a mount whose daemon is dead)."""
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    command = [tool, "-u", "-z", str(path)] if tool else ["umount", "-l", str(path)]
    subprocess.run(command, check=False, capture_output=True, timeout=30)


def prepare_mountpoint(path: str) -> str:
    """Check `path` can be mounted on, cleaning up a stale mount left by a crashed daemon.

    Returns the absolute path, symlinks resolved. Raises MountpointError with a one-line reason.
    """
    absolute = os.path.realpath(path)
    if is_mounted(absolute):
        try:
            # statfs always reaches the daemon (stat may be answered from the kernel's cache).
            os.statvfs(absolute)
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:
                lazy_unmount(absolute)
    try:
        info = os.stat(absolute)
    except FileNotFoundError:
        raise MountpointError(
            f"mountpoint {absolute} does not exist; create it with: mkdir -p {absolute}"
        ) from None
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise MountpointError(
                f"mountpoint {absolute}: {exc.strerror}; mount on an empty directory you can reach"
            ) from None
        # "Transport endpoint is not connected": a daemon died without unmounting.
        lazy_unmount(absolute)
        try:
            info = os.stat(absolute)
        except OSError as again:
            raise MountpointError(
                f"mountpoint {absolute} is a stale mount that could not be cleaned ({again.strerror}); "
                f"run: fusermount3 -u -z {absolute}"
            ) from None
    if not os.path.isdir(absolute) or not _is_dir(info.st_mode):
        raise MountpointError(f"mountpoint {absolute} is not a directory; mount on an empty directory")
    if is_mounted(absolute):
        raise MountpointError(
            f"{absolute} is already a mount point; unmount it first (fusestore umount {absolute})"
        )
    if os.listdir(absolute):
        raise MountpointError(
            f"mountpoint {absolute} is not empty; the mount would hide its files - use an empty directory"
        )
    if not os.access(absolute, os.W_OK | os.X_OK):
        raise MountpointError(
            f"mountpoint {absolute} is not writable by you; mount on an empty directory of your own"
        )
    return absolute


def _is_dir(mode: int) -> bool:
    import stat

    return stat.S_ISDIR(mode)


def runtime_dir() -> Path:
    """Where live daemons register: /run/fusestore for root, else $XDG_RUNTIME_DIR/fusestore."""
    if os.geteuid() == 0:
        return Path("/run/fusestore")
    base = os.environ.get("XDG_RUNTIME_DIR")
    return Path(base) / "fusestore" if base else Path(f"/tmp/fusestore-{os.geteuid()}")


def checked_runtime_dir(*, create: bool) -> Path | None:
    """The runtime directory once it is private to this user (see `private`): made 0700
    when missing and `create`, else None when missing. UnsafeDirectory (one line naming it
    and the fix) when another user owns it or could write to it, or it is a symlink: they
    could plant a registry entry or a control socket of their own there."""
    path = runtime_dir()
    fix = f"remove it (rm -rf {path}) and try again"
    if os.geteuid() != 0:
        fix += ", or set XDG_RUNTIME_DIR to a directory only you can write to"
    if create:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        return private_dir(path, "runtime directory", fix, create=create)
    except FileNotFoundError:
        if create:
            raise
        return None


def _entry_path(mountpoint: str) -> Path:
    # abspath, not realpath: resolving would stat the mount root, which the daemon itself
    # must not do while it is not serving requests yet.
    digest = hashlib.sha256(os.path.abspath(mountpoint).encode()).hexdigest()[:24]
    return runtime_dir() / f"{digest}.json"


def control_path(mountpoint: str) -> Path:
    """The daemon's control socket (see `control`), next to its registry entry."""
    return _entry_path(mountpoint).with_suffix(".sock")


#: Entries of daemons that exited are kept this long (`umount` and a service's ExecStop
#: read the exit code from them), then removed when another daemon registers.
ENTRY_KEPT = 86400.0


def register(mountpoint: str, info: dict[str, Any]) -> None:
    """Record the daemon serving `mountpoint` (its pid, store, cache)."""
    checked_runtime_dir(create=True)
    path = _entry_path(mountpoint)
    if "exit_code" not in info:
        _prune(path.parent)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"mountpoint": os.path.abspath(mountpoint), **info}))
    os.replace(tmp, path)


def registered(mountpoint: str) -> dict[str, Any] | None:
    """The registry entry of `mountpoint`: this user's, or for root any user's.
    UnsafeDirectory when this user's runtime directory is not private to them."""
    own = _entry_path(mountpoint)
    try:
        if checked_runtime_dir(create=False) is not None:
            entry: dict[str, Any] = json.loads(own.read_text())
            return entry
    except UnsafeDirectory:
        raise
    except (OSError, ValueError):
        pass
    if os.geteuid() != 0:
        return None
    # Root may look after every user's mounts, trusting an entry only where its user alone
    # can write it (their 0700 /run/user/UID) and only for a daemon that user runs.
    for path in sorted(Path("/run/user").glob(f"*/fusestore/{own.name}")):
        try:
            uid = int(path.parent.parent.name)
            if path.stat().st_uid != uid:
                continue
            entry = json.loads(path.read_text())
            pid = entry.get("pid")
            if pid and process_alive(pid) and Path(f"/proc/{pid}").stat().st_uid != uid:
                continue
        except (OSError, ValueError):
            continue
        return entry
    return None


def fusestore_mounts() -> list[str]:
    """Mountpoints of every fusestore mount this process can see."""
    return [entry.mountpoint for entry in mount_table() if entry.fstype == "fuse.fusestore"]


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return stat_file.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _prune(directory: Path) -> None:
    """Remove entries (and sockets) of daemons that exited more than ENTRY_KEPT ago."""
    now = time.time()
    for entry in directory.glob("*.json"):
        try:
            if now - entry.stat().st_mtime < ENTRY_KEPT:
                continue
            pid = json.loads(entry.read_text()).get("pid")
        except (OSError, ValueError):
            continue
        if not pid or not process_alive(pid):
            entry.unlink(missing_ok=True)
            entry.with_suffix(".sock").unlink(missing_ok=True)


def set_read_ahead(mountpoint: str, kib: int) -> bool:
    """Raise the kernel's read-ahead for the mount (its backing device info), so that
    sequential reads arrive as 1 MiB requests instead of 128 KiB ones (half the daemon's
    CPU per byte, measured). Needs root; returns whether it was set. The device comes
    from the mount table: stat() of the mount root would ask this very daemon."""
    entry = _on_top(os.path.abspath(mountpoint))  # not realpath: it would stat the mount root
    if entry is None:
        return False
    try:
        with open(f"/sys/class/bdi/{entry.device}/read_ahead_kb", "w") as knob:
            knob.write(str(kib))
    except OSError:
        return False
    return True


def wait_exit(pid: int, timeout: float | None = None) -> bool:
    """Wait until process `pid` has exited; False if `timeout` seconds passed first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while process_alive(pid):
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True

"""Directories only this user can change: the runtime directory (registry entries, control
sockets) and the cache directory.

Whoever can write to such a directory, or owns it, can plant or replace what fusestore
trusts there: a control socket that answers `status` and `flush` with lies, a registry
entry, a journal. `private_dir` makes a missing directory 0700 in one mkdir (never a
moment with other modes) and then checks what is there with lstat: a directory, not a
symlink, owned by the expected user, writable by no group and no other user, in a parent
that no other user can rename it out of (its owner or root's, and sticky if others may
write to it). Anything else is refused with one line naming the directory and the fix.
Every function blocks on local disk only.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Collection
from pathlib import Path


class UnsafeDirectory(PermissionError):
    """A directory other users could change; the message is one line naming it and the fix."""


def private_dir(
    path: Path,
    what: str,
    fix: str,
    *,
    create: bool = True,
    owners: Collection[int] | None = None,
) -> Path:
    """`path`, made 0700 when missing (`create`; its parent must exist), once it is safe
    (see the module docstring). `owners`: the uids it may belong to (default: this
    process's effective uid). Raises UnsafeDirectory, FileNotFoundError (missing and not
    `create`), or another OSError from mkdir or lstat."""
    owners = {os.geteuid()} if owners is None else set(owners)
    # The parent first: a directory refused for it is never made there.
    problem = _parent_problem(path.parent, owners)
    if problem is None:
        if create:
            with contextlib.suppress(FileExistsError):  # then it is checked like any other
                os.mkdir(path, 0o700)
        problem = _problem(os.lstat(path), owners)
    if problem is not None:
        raise UnsafeDirectory(f"{what} {path} {problem}; {fix}")
    return path


def _problem(info: os.stat_result, owners: Collection[int]) -> str | None:
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISLNK(info.st_mode):
        return "is a symlink, which could lead anywhere"
    if not stat.S_ISDIR(info.st_mode):
        return "exists and is not a directory"
    if info.st_uid not in owners:
        return f"belongs to uid {info.st_uid}, not to you (uid {os.geteuid()})"
    if mode & 0o022:
        return f"is writable by other users (mode {mode:04o})"
    return None


def _parent_problem(parent: Path, owners: Collection[int]) -> str | None:
    """Why another user could rename the directory out of `parent` and put their own in
    its place, or None."""
    info = os.lstat(parent)
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid not in (*owners, 0):
        return f"is in {parent}, which belongs to uid {info.st_uid}: they could replace it"
    if mode & 0o022 and not mode & stat.S_ISVTX:
        return f"is in {parent}, which other users may write to (mode {mode:04o}): they could replace it"
    return None

"""What one path of a file store holds, as an object: its stat and `user.fusestore`
attribute turned into an `ObjectInfo`. Shared by the store and its listing helper
process; every function blocks on disk (one or two system calls)."""

from __future__ import annotations

import errno
import json
import os
import stat
from typing import Any

from .base import ObjectInfo

#: The extended attribute holding an object's metadata and generation.
XATTR = "user.fusestore"


def read_attr(target: str | int) -> dict[str, Any] | None:
    """The `user.fusestore` attribute of a path or fd; None when it has none."""
    try:
        raw = os.getxattr(target, XATTR)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.ENOENT, errno.ENOTDIR):
            return None  # no attribute, or no such path (any more)
        raise
    try:
        attr = json.loads(raw)
    except ValueError:
        return None
    return attr if isinstance(attr, dict) else None


def object_info(key: str, st: os.stat_result, attr: dict[str, Any] | None) -> ObjectInfo:
    """The object `key` whose file (or marker directory) has stat `st` and attribute `attr`."""
    meta = attr.get("meta") if attr else None
    meta = dict(meta) if isinstance(meta, dict) else {}  # another tool's attribute may hold anything
    gen = attr.get("gen", "") if attr else ""
    if stat.S_ISDIR(st.st_mode):
        return ObjectInfo(key, 0, f'"d-{st.st_ino:x}-{gen}"', st.st_mtime, meta)
    etag = f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}-{gen}"'
    return ObjectInfo(key, st.st_size, etag, st.st_mtime, meta)


def lookup(key: str, path: str, marker: bool) -> ObjectInfo | None:
    """The object at `path`, or None when there is none (a plain directory is none)."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if marker:
        attr = read_attr(path) if stat.S_ISDIR(st.st_mode) else None
        return None if attr is None else object_info(key, st, attr)
    if not stat.S_ISREG(st.st_mode):
        return None
    return object_info(key, st, read_attr(path))


def lookup_in(dir_fd: int, dir_path: str, name: str, key: str) -> ObjectInfo | None:
    """The object of file `name` in the directory open as `dir_fd` (at `dir_path`), or None
    when it is gone or no regular file. A listing's per-entry call: the stat resolves the
    name alone, not the whole path again (a fifth of a cold page's time)."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return object_info(key, st, read_attr(f"{dir_path}/{name}"))

"""Where a mount's cache lives, who may read it, and that only one daemon uses it.

One cache directory per store URL, so a remount of the same store finds its data and its
journal again. The directory is 0700 and its files 0600: it holds other people's data.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import stat
from pathlib import Path

from ..private import UnsafeDirectory, private_dir


class CacheLocked(RuntimeError):
    """Another live daemon uses this cache directory."""


class CacheUnusable(PermissionError):
    """The cache directory cannot be ours: someone else's, writable by others, a symlink,
    not writable, not a directory."""


def default_cache_root() -> Path:
    """`/var/cache/fusestore` for root, else `$XDG_CACHE_HOME/fusestore` (`~/.cache/fusestore`)."""
    if os.geteuid() == 0:
        return Path("/var/cache/fusestore")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fusestore"


def cache_name(store_url: str) -> str:
    """A directory name derived from the URL (never built from it: URLs hold slashes)."""
    return hashlib.sha256(store_url.encode()).hexdigest()[:24]


class CacheDir:
    """An opened, locked cache directory.

    Layout: `data/` (sparse files named by content id), `index/` (diskcache: clean
    contents and object metadata), `journal/` (diskcache: work not yet in the store),
    `lock` (flock held while a daemon uses the cache), `store.json` (which store).
    Opening blocks only on local disk; it raises CacheLocked when another process holds
    the lock, and CacheUnusable (a PermissionError) when the directory cannot be ours.
    """

    def __init__(self, path: Path, store_url: str) -> None:
        self.path = path
        self.store_url = store_url
        self._lock_fd: int | None = None

    @classmethod
    def for_store(cls, store_url: str, cache_dir: str | None) -> CacheDir:
        """The cache for `store_url`: `cache_dir` itself when given, else one under the default root."""
        if cache_dir:
            return cls(Path(cache_dir).absolute(), store_url)
        return cls(default_cache_root() / cache_name(store_url), store_url)

    @property
    def data_dir(self) -> Path:
        return self.path / "data"

    def open(self) -> CacheDir:
        try:
            return self._open()
        except OSError as exc:
            if isinstance(exc, CacheUnusable):
                raise
            self.close()
            reason = "exists and is not a directory" if exc.errno == errno.EEXIST else exc.strerror
            raise CacheUnusable(
                f"cache directory {self.path} cannot be used ({reason}); choose another --cache-dir"
            ) from None

    def _open(self) -> CacheDir:
        if not os.path.lexists(self.path.parent):
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            # Someone else's, one others may write to, or a symlink: they could have
            # planted a journal (uploaded as our changes) or data files. Made here only
            # once its parent is found safe.
            private_dir(self.path, "cache directory", "choose another --cache-dir")
        except UnsafeDirectory as exc:
            raise CacheUnusable(str(exc)) from None
        if stat.S_IMODE(self.path.stat().st_mode) & 0o077:
            os.chmod(self.path, 0o700)  # readable by others (made by hand): ours to close
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise CacheUnusable(f"cache directory {self.path} is not writable; choose another --cache-dir")
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CacheLocked(
                f"cache directory {self.path} is in use by another fusestore daemon; "
                "unmount that one first or choose another --cache-dir"
            ) from None
        self._lock_fd = fd
        try:
            self._check_store()
        except BaseException:
            self.close()
            raise
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        return self

    def _check_store(self) -> None:
        """A cache belongs to one store: mixing two would upload one store's data to the other."""
        marker = self.path / "store.json"
        try:
            recorded = json.loads(marker.read_text())["url"]
        except FileNotFoundError:
            marker.write_text(json.dumps({"url": self.store_url}))
            os.chmod(marker, 0o600)
            return
        except (ValueError, KeyError):
            recorded = None
        if recorded != self.store_url:
            raise CacheLocked(
                f"cache directory {self.path} belongs to {recorded}, not {self.store_url}; "
                "choose another --cache-dir"
            )

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

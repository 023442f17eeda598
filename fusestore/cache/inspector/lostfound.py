"""A cache's lost+found, and `recover`: copying out what may not be in the store.

Reading never changes the cache; `recover` removes from lost+found only what it has
copied, and leaves data files in place. The journal and the index are read as
`fusestore.cache.dbread` says (read-only, plain data only). Blocks on local disk only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..dbread import Unreadable, read_rows
from ..recovery import LOST_FOUND, LostEntry
from ..recovery import lost_entries as _lost_entries
from ..recovery import recover as _recover
from .cachedir import data_files, in_use_by_daemon, opened
from .errors import CacheError
from .journalread import read_pending


def lost_entries(path: Path | str) -> list[LostEntry]:
    """What the lost+found of the cache at `path` holds (read-only)."""
    path = Path(path).absolute()
    with opened(path):
        return _lost_entries(path / LOST_FOUND)


def recover(path: Path | str, target: Path | str) -> list[tuple[str, Path]]:
    """Copy what the cache at `path` holds that may not be in the store into `target`:
    every file of its lost+found (then removed from there), and, when its journal cannot
    be read, every non-empty data file its index does not name as a clean copy of the
    size it holds (those stay). Works while a daemon uses the cache (a daemon writes to lost+found only before
    it mounts). Returns (what, copied to). Raises CacheError. Blocks on local disk only."""
    path = Path(path).absolute()
    with opened(path) as dir_fd:
        loose: list[Path] = []
        try:
            read_pending(path, dir_fd, in_use=in_use_by_daemon(dir_fd))
        except Unreadable:
            try:
                clean_sizes = _clean_sizes(read_rows(path, dir_fd, "index", _is_content, in_use=False) or [])
            except Unreadable:
                clean_sizes = {}  # no index either: every data file may matter
            loose = [
                path / "data" / name
                for name, size in data_files(dir_fd).items()
                if size and not _vouched_for(path / "data" / name, clean_sizes.get(name, -1))
            ]
        try:
            return _recover(path / LOST_FOUND, loose, Path(target))
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise CacheError(f"recovering into {target} stopped: {exc.strerror}{where}") from None


def _is_content(key: Any) -> bool:
    """Whether an index key is a clean content's (("content", id), see `ContentStore.save`)."""
    return type(key) is tuple and len(key) == 2 and key[0] == "content" and isinstance(key[1], str)


def _clean_sizes(rows: list[tuple[Any, Any]]) -> dict[str, int | None]:
    """Content id -> the size its index entry states (None: it states none)."""
    sizes: dict[str, int | None] = {}
    for (_, content_id), value in rows:
        size = value.get("size") if isinstance(value, dict) else None
        sizes[content_id] = size if isinstance(size, int) else None
    return sizes


def _vouched_for(data: Path, indexed_size: int | None) -> bool:
    """Whether the data file `data` is the clean copy its index entry says (the size it
    states: an entry a power cut brought back may name a file changed since; a change
    that keeps the size goes unnoticed)."""
    try:
        return data.lstat().st_size == indexed_size
    except FileNotFoundError:
        return True  # gone meanwhile: nothing to copy

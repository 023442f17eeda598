"""A cache that cannot be fully trusted: what the mount refuses, rebuilds or sets aside.

- A journal that cannot be read, or that has lost records it is known to have held, stops
  the mount (`JournalDamaged`): only it knows which data files hold changes not yet in
  the store. `check_wal` finds a write-ahead log SQLite would silently ignore (a garbled
  header makes SQLite treat the whole log as empty, and its records as never written;
  a damaged frame, every commit after it).
- A damaged index holds only what the store has too (clean copies, listings, pins): it is
  rebuilt empty (`open_index`), with a warning.
- Data files no record accounts for, and pending files shorter than their journal record
  says, are never deleted and never uploaded: `LostFound` keeps them in the cache's
  `lost+found/`, each with a note (its key when known, why it is there), until
  `fusestore cache recover` copies them out (`recover`).

Everything here blocks on local disk (small files, at startup or in the CLI).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import stat
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .diskfull import Index

log = logging.getLogger(__name__)

LOST_FOUND = "lost+found"
NOTE_SUFFIX = ".json"
#: SQLite's write-ahead log header: magic (the low bit: big-endian checksums), version
_WAL_MAGIC = (0x377F0682, 0x377F0683)
_WAL_VERSION = 3007000
_WAL_HEADER = 32
#: each frame: page number, database size (commits), salts, checksum; then the page
_WAL_FRAME_HEADER = 24


class JournalDamaged(Exception):
    """The journal cannot be read, or has lost records: the mount must not start. The
    message is one line naming the cache and what to do."""

    def __init__(self, cache: Path, reason: str) -> None:
        super().__init__(
            f"the journal of the cache {cache} is damaged ({reason}); changes it held may not be "
            f"in the store, so nothing was mounted: `fusestore cache recover {cache} DIR` copies "
            f"every data file it may have named into DIR, then `fusestore cache clean --force "
            f"{cache}` lets the store mount again"
        )
        self.reason = reason


def check_wal(path: Path) -> str | None:
    """Why the write-ahead log at `path` is damaged, or None (missing, empty or sound).

    SQLite drops a log whose header is wrong without a word, and with it every commit
    not yet copied into the database: the header (magic, version, checksum) is checked
    here first. A header is written whole within one sector, so a crash cannot tear it.
    SQLite also stops reading the log at the first frame whose checksum (cumulative,
    from the header on) fails, dropping every commit after it: so are the frames, and a
    failing one followed by a frame of the same log (its salts; frames of an earlier one
    left past the end are normal) is damage. A failing frame at the end is not: a crash
    can cut the last write short. Blocks: reads the whole log (bounded by SQLite's
    checkpoints, ~1000 pages; ~0.2 ms a page here), only after a crash (an unmount
    checkpoints and removes it).
    """
    try:
        with open(path, "rb") as wal:
            return _check_log(wal, path)
    except FileNotFoundError:
        return None


def _check_log(wal: BinaryIO, path: Path) -> str | None:
    """`check_wal` of the open log `wal`."""
    header = wal.read(_WAL_HEADER)
    if not header:
        return None
    if len(header) < _WAL_HEADER:
        return f"{path.name} is cut short ({len(header)} bytes)"
    magic, version, page_size = struct.unpack(">III", header[:12])
    if magic not in _WAL_MAGIC or version != _WAL_VERSION:
        return f"{path.name} is not a write-ahead log"
    order = ">" if magic & 1 else "<"
    checksum = _wal_checksum(struct.unpack(order + "6I", header[:24]), (0, 0))
    if checksum != struct.unpack(">II", header[24:32]):
        return f"{path.name} has a damaged header"
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return f"{path.name} has a damaged header"
    salts = header[16:24]
    frame_words = struct.Struct(f"{order}2I")
    page_words = struct.Struct(f"{order}{page_size // 4}I")
    number, failed = 0, None
    while len(frame := wal.read(_WAL_FRAME_HEADER + page_size)) == _WAL_FRAME_HEADER + page_size:
        number += 1
        if failed is None:
            if frame[8:16] == salts:
                words = frame_words.unpack_from(frame) + page_words.unpack_from(frame, _WAL_FRAME_HEADER)
                checksum = _wal_checksum(words, checksum)
                if checksum == struct.unpack(">II", frame[16:24]):
                    continue
            failed = number  # SQLite reads no further
        elif frame[8:16] == salts:
            return (
                f"{path.name} has a damaged frame ({failed}), and SQLite would drop the "
                f"commits after it (from frame {number} on)"
            )
    return None


def _wal_checksum(words: tuple[int, ...], start: tuple[int, int]) -> tuple[int, int]:
    """SQLite's write-ahead log checksum of `words` (an even number), from `start`."""
    s1, s2 = start
    for first, second in zip(words[0::2], words[1::2], strict=True):
        s1 = (s1 + first + s2) & 0xFFFFFFFF
        s2 = (s2 + second + s1) & 0xFFFFFFFF
    return s1, s2


def open_index(path: Path) -> tuple[Index, str | None]:
    """The cache's index, and None; or, when it cannot be read, a new empty one and why
    the old one was dropped (it held nothing the store does not have: said in the log)."""
    try:
        return Index(str(path), eviction_policy="none", size_limit=2**62), None
    except sqlite3.OperationalError:
        raise  # a full disk, a lock: nothing wrong with the index itself
    except sqlite3.DatabaseError as exc:
        reason = str(exc)
    log.warning(
        "the index of the cache %s could not be read (%s): rebuilt empty; cached copies of "
        "objects are fetched again, and pinned paths must be pinned again",
        path.parent,
        reason,
    )
    shutil.rmtree(path, ignore_errors=True)
    return Index(str(path), eviction_policy="none", size_limit=2**62), reason


@dataclass(frozen=True)
class LostEntry:
    """A data file kept aside in lost+found, with what its note says."""

    #: its name in lost+found (the content id it had in data/)
    name: str
    #: the file's key on the mount, when a journal record named it
    key: str | None
    #: bytes kept (None: the data file itself was missing)
    size: int | None
    #: the size its journal record stated, when known
    expected_size: int | None
    reason: str
    time: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "size": self.size,
            "expected_size": self.expected_size,
            "reason": self.reason,
            "time": self.time,
        }


class LostFound:
    """The `lost+found/` of one cache: `<id>` (the data) and `<id>.json` (its note)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def keep(
        self,
        data: Path,
        *,
        key: str | None,
        reason: str,
        expected_size: int | None = None,
    ) -> None:
        """Move the data file `data` here (same disk: a rename) with a note; a missing
        file leaves the note alone, so the loss is still reported. Durable on return."""
        self.path.mkdir(mode=0o700, exist_ok=True)
        try:
            size: int | None = data.stat().st_size
        except FileNotFoundError:
            size = None
        note = {
            "key": key,
            "size": size,
            "expected_size": expected_size,
            "reason": reason,
            "time": time.time(),
        }
        _write_durably(self.path / (data.name + NOTE_SUFFIX), json.dumps(note).encode())
        if size is not None:
            os.rename(data, self.path / data.name)
            _fsync_dir(data.parent)
        _fsync_dir(self.path)

    def keep_if_cut_short(self, data: Path, record: dict[str, Any]) -> bool:
        """Whether the cache file `data` of a pending file's journal `record` is shorter
        than the record says (a record never states more than the file held when it was
        written); such a file is kept here with the record's key, and said in the log."""
        size = data.stat().st_size if data.exists() else None
        if (size or 0) >= record["size"]:
            return False  # a new file's cache file is made at its first write: none yet is empty
        found = "missing" if size is None else f"{size} bytes"
        self.keep(
            data,
            key=record["key"],
            expected_size=record["size"],
            reason=f"cache file {found}, its record says {record['size']}",
        )
        log.error(
            "%s: its cached data is %s, %d bytes expected: not uploaded; kept in %s (cache recover)",
            record["key"],
            found,
            record["size"],
            self.path,
        )
        return True

    def entries(self) -> list[LostEntry]:
        return lost_entries(self.path)


def lost_entries(path: Path) -> list[LostEntry]:
    """What the lost+found at `path` holds, by name (read-only; a missing one holds nothing)."""
    try:
        names = sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        if name.endswith(NOTE_SUFFIX):
            continue
        st = os.lstat(path / name)
        if not stat.S_ISREG(st.st_mode):
            continue
        found.append(_entry(path, name, st.st_size))
    for name in names:  # notes of data files that were missing
        if name.endswith(NOTE_SUFFIX) and name[: -len(NOTE_SUFFIX)] not in names:
            found.append(_entry(path, name[: -len(NOTE_SUFFIX)], None))
    return found


def _entry(path: Path, name: str, size: int | None) -> LostEntry:
    try:
        note = json.loads((path / (name + NOTE_SUFFIX)).read_bytes())
        if not isinstance(note, dict):
            note = {}
    except (OSError, ValueError):
        note = {}
    key = note.get("key")
    expected = note.get("expected_size")
    return LostEntry(
        name=name,
        key=key if isinstance(key, str) else None,
        size=size,
        expected_size=expected if isinstance(expected, int) else None,
        reason=str(note.get("reason") or "no note: status unknown"),
        time=float(note["time"]) if isinstance(note.get("time"), int | float) else 0.0,
    )


def recover(lost_found: Path, loose: list[Path], target: Path) -> list[tuple[str, Path]]:
    """Copy every file of `lost_found`, and the data files `loose`, into `target` (made if
    missing): a file under its key when its note names one, else under its id; never over
    an existing file (`.1`, `.2` … are added). Each copy is fsynced before its lost+found
    entry is removed; `loose` files stay where they are. Returns (what, copied to)."""
    target.mkdir(parents=True, exist_ok=True)
    done: list[tuple[str, Path]] = []
    for entry in lost_entries(lost_found):
        source = lost_found / entry.name
        if entry.size is not None:
            copy = _copy(source, _destination(target, entry.key, entry.name))
            done.append((entry.key or entry.name, copy))
            source.unlink()
        (lost_found / (entry.name + NOTE_SUFFIX)).unlink(missing_ok=True)
    for source in loose:
        done.append((source.name, _copy(source, _destination(target, None, source.name))))
    if lost_found.is_dir():
        _fsync_dir(lost_found)
    return done


def _destination(target: Path, key: str | None, name: str) -> Path:
    parts = key.split("/") if key else []
    if not parts or any(part in ("", ".", "..") for part in parts):
        parts = [name]  # no key, or one that would leave the target: the id
    path = target.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate, number = path, 0
    while candidate.exists() or candidate.is_symlink():
        number += 1
        candidate = path.with_name(f"{path.name}.{number}")
    return candidate


def _copy(source: Path, destination: Path) -> Path:
    with open(source, "rb") as src, open(destination, "xb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.fsync(dst.fileno())
    _fsync_dir(destination.parent)
    return destination


def _write_durably(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temporary, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""POSIX attributes in object metadata, compatible with s3fs-fuse.

s3fs stores a file's mode, owner and modification time as the user metadata
`x-amz-meta-mode` (decimal st_mode, file-type bits included), `x-amz-meta-uid`,
`x-amz-meta-gid` and `x-amz-meta-mtime` (decimal seconds since the epoch). fusestore reads
and writes the same names, so a bucket can move between the two without losing them.

This is the one place where such metadata is read, and any value may be garbage (another
tool, a hand-made header, a damaged store): a value that is not one of the forms below, or
is out of range, is ignored, field by field, and nothing here raises.

- uid, gid: ASCII decimal, 0 to 2**32 - 2 (2**32 - 1 is chown's "leave unchanged").
- mode: ASCII decimal up to 0o177777, whose file-type bits are none, or the object's
  kind: a directory for a `dir/` marker; a regular file, a symlink of at most
  `SYMLINK_MAX` bytes, or, for an empty object, a FIFO, a socket or a device, for any
  other object. Anything else (a FIFO with data, a directory mode on a plain object) is
  ignored whole: permission bits meant for another type of file say nothing about this one.
- rdev: a device's number (st_rdev), ASCII decimal below 2**64; read for devices only.
- mtime, ctime, atime: ASCII decimal seconds, with an optional sign and fraction, within
  what the kernel keeps (a signed 64-bit count of seconds): `touch -d 1960-01-01` and
  `touch -d 9999-01-01` both come back as set. A negative time is written
  sign-and-magnitude (`-1.5` is a second and a half before 1970). s3fs writes all three;
  fusestore writes ctime and atime where they are not the mtime, which a reader takes for
  either one missing (see docs/semantics.md).
- xattr: extended attributes as s3fs keeps them, the URL-encoded JSON object
  `{"user.name": "<base64 of the value>", ...}`. A value that is not such an object is
  ignored whole, a member whose name is not text or whose value is not base64, alone.

Other metadata names are another tool's: written back as they were (`to_metadata`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import stat
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .keys import check_metadata

#: The longest symlink target: PATH_MAX less its terminating NUL. A bigger object is
#: never a symlink, whatever its metadata says.
SYMLINK_MAX = 4095
#: The highest uid or gid a file can have (2**32 - 1 is chown's "leave unchanged").
ID_MAX = 2**32 - 2
#: The highest st_mode: file-type and permission bits, nothing above.
MODE_MAX = 0o177777
#: The latest time the kernel keeps, in seconds (a signed 64-bit count).
TIME_S_MAX = 2**63 - 1
#: The metadata names of the attributes; any other name is another tool's.
NAMES = ("mode", "uid", "gid", "mtime", "rdev", "ctime", "atime", "xattr")
#: The longest name of an extended attribute, as Linux allows (XATTR_NAME_MAX).
XATTR_NAME_MAX = 255
#: The highest device number (st_rdev is 64 bits).
RDEV_MAX = 2**64 - 1
#: The types of the special files: an empty object each (s3fs stores them so too).
SPECIAL_TYPES = frozenset((stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK))
_DEVICES = (stat.S_IFCHR, stat.S_IFBLK)
#: The name of the token every upload of fusestore's carries (see the write-back's
#: landings): each upload writes its own, so one is never carried over.
UPLOAD_TOKEN = "fusestore-upload"

_INTEGER = re.compile(r"[0-9]{1,20}")
_SECONDS = re.compile(r"([-+]?)([0-9]{1,20})(?:\.([0-9]{1,64}))?")


@dataclass(frozen=True)
class PosixAttrs:
    """Attributes found in metadata; None for each one that is absent or unreadable."""

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    mtime_ns: int | None = None
    rdev: int | None = None
    ctime_ns: int | None = None
    atime_ns: int | None = None
    #: extended attributes (name, value), sorted by name; None: the metadata names none
    xattrs: tuple[tuple[str, bytes], ...] | None = None

    @property
    def is_symlink(self) -> bool:
        return self.mode is not None and stat.S_ISLNK(self.mode)

    @classmethod
    def from_metadata(
        cls, metadata: Mapping[str, Any] | None, *, directory: bool = False, size: int = 0
    ) -> PosixAttrs:
        """The valid attributes of an object of `size` bytes (`directory`: a `dir/`
        marker) in its user metadata; never raises, whatever the values are."""
        if metadata is None or (type(metadata) is dict and not metadata):
            return NO_ATTRS  # most listed objects: made by another program, no metadata
        meta = metadata if isinstance(metadata, Mapping) else {}
        mode = _mode(_text(meta, "mode"), directory, size)
        rdev = _integer(_text(meta, "rdev")) if mode is not None and stat.S_IFMT(mode) in _DEVICES else None
        return cls(
            mode=mode,
            uid=_id(_text(meta, "uid")),
            gid=_id(_text(meta, "gid")),
            mtime_ns=_seconds_to_ns(_text(meta, "mtime")),
            rdev=rdev if rdev is not None and rdev <= RDEV_MAX else None,
            ctime_ns=_seconds_to_ns(_text(meta, "ctime")),
            atime_ns=_seconds_to_ns(_text(meta, "atime")),
            xattrs=decode_xattrs(_text(meta, "xattr")),
        )

    def to_metadata(self, stored: Mapping[str, Any] | None = None) -> dict[str, str]:
        """The metadata to write: each attribute that is set, and the other names of
        `stored` (the metadata of the object this one replaces) as they were, where a
        store can carry them at all. An attribute's own name is never taken from `stored`:
        its value there was either this one or one ignored as invalid."""
        meta: dict[str, str] = {}
        if isinstance(stored, Mapping):
            meta.update((k, v) for k, v in stored.items() if k not in NAMES and _writable(k, v))
        if self.mode is not None:
            meta["mode"] = str(self.mode)
        if self.uid is not None:
            meta["uid"] = str(self.uid)
        if self.gid is not None:
            meta["gid"] = str(self.gid)
        if self.mtime_ns is not None:
            meta["mtime"] = _ns_to_seconds(self.mtime_ns)
        if self.rdev is not None:
            meta["rdev"] = str(self.rdev)
        if self.ctime_ns is not None:
            meta["ctime"] = _ns_to_seconds(self.ctime_ns)
        if self.atime_ns is not None:
            meta["atime"] = _ns_to_seconds(self.atime_ns)
        if self.xattrs:
            meta["xattr"] = encode_xattrs(self.xattrs)
        return meta


def encode_xattrs(xattrs: tuple[tuple[str, bytes], ...]) -> str:
    """Extended attributes as s3fs's `xattr` metadata value (printable ASCII)."""
    members = {name: base64.b64encode(value).decode("ascii") for name, value in xattrs}
    return urllib.parse.quote(json.dumps(members, separators=(",", ":")), safe="")


def decode_xattrs(text: str | None) -> tuple[tuple[str, bytes], ...] | None:
    """The extended attributes in an `xattr` metadata value, sorted by name; None when
    there is none, or it is not the form `encode_xattrs` (and s3fs) write."""
    if not text:
        return None
    try:
        members = json.loads(urllib.parse.unquote(text, errors="strict"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(members, dict):
        return None
    found = []
    for name, encoded in members.items():
        if not (0 < len(name.encode("utf-8", "surrogatepass")) <= XATTR_NAME_MAX) or not isinstance(
            encoded, str
        ):
            continue
        try:
            found.append((name, base64.b64decode(encoded, validate=True)))
        except (binascii.Error, ValueError):
            continue
    return tuple(sorted(found)) or None


def _ns_to_seconds(ns: int) -> str:
    seconds, nanos = divmod(abs(ns), 1_000_000_000)
    text = f"{seconds}.{nanos:09d}".rstrip("0").rstrip(".")
    return f"-{text}" if ns < 0 and text != "0" else text


#: Attributes of metadata that holds none (frozen: one instance serves every object).
NO_ATTRS = PosixAttrs()


def carries_other_names(metadata: Mapping[str, Any]) -> bool:
    """Whether `metadata` holds a name `to_metadata` would write back: another tool's.
    (Called per listed object: a set comparison, not a loop.)"""
    return bool(metadata) and not metadata.keys() <= _OWN_NAMES


_OWN_NAMES = frozenset((*NAMES, UPLOAD_TOKEN))


def _writable(name: Any, value: Any) -> bool:
    try:
        check_metadata({name: value})
    except (ValueError, TypeError):
        return False
    return True


def _text(meta: Mapping[str, Any], name: str) -> str | None:
    """The value as text, without the blanks a header may carry; None unless it is text
    (drivers hand over strings: anything else is no value fusestore or s3fs wrote)."""
    try:
        value = meta.get(name)
    except Exception:  # a mapping that fails to look up holds nothing usable
        return None
    return value.strip(" \t") if isinstance(value, str) else None


def _integer(text: str | None) -> int | None:
    return int(text) if text is not None and _INTEGER.fullmatch(text) else None


def _id(text: str | None) -> int | None:
    value = _integer(text)
    return value if value is not None and value <= ID_MAX else None


def _mode(text: str | None, directory: bool, size: int) -> int | None:
    value = _integer(text)
    if value is None or value > MODE_MAX:
        return None
    kind = stat.S_IFMT(value)
    if kind == 0:
        return value
    if directory:
        return value if kind == stat.S_IFDIR else None
    if kind == stat.S_IFREG or (kind == stat.S_IFLNK and size <= SYMLINK_MAX):
        return value
    if kind in SPECIAL_TYPES and size == 0:
        return value
    return None


def _seconds_to_ns(text: str | None) -> int | None:
    """`1700000000`, `1700000000.25` or `-1.5` as nanoseconds; None when it is not a time
    the kernel can keep."""
    found = _SECONDS.fullmatch(text) if text is not None else None
    if found is None:
        return None
    sign, seconds, fraction = found.groups()
    whole = int(seconds)
    negative = sign == "-"
    if whole > TIME_S_MAX + (1 if negative else 0):
        return None
    value = whole * 1_000_000_000 + int((fraction or "")[:9].ljust(9, "0"))
    return -value if negative else value

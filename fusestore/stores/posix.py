"""POSIX attributes in object metadata, compatible with s3fs-fuse.

s3fs stores a file's mode, owner and modification time as the user metadata
`x-amz-meta-mode` (decimal st_mode, file-type bits included), `x-amz-meta-uid`,
`x-amz-meta-gid` and `x-amz-meta-mtime` (decimal seconds since the epoch). fusestore reads
and writes the same names, so a bucket can move between the two without losing them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PosixAttrs:
    """Attributes found in metadata; None for each one that is absent or unreadable."""

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    mtime_ns: int | None = None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str] | None) -> PosixAttrs:
        meta = metadata or {}
        return cls(
            mode=_int(meta.get("mode")),
            uid=_int(meta.get("uid")),
            gid=_int(meta.get("gid")),
            mtime_ns=_seconds_to_ns(meta.get("mtime")),
        )

    def to_metadata(self) -> dict[str, str]:
        meta = {}
        if self.mode is not None:
            meta["mode"] = str(self.mode)
        if self.uid is not None:
            meta["uid"] = str(self.uid)
        if self.gid is not None:
            meta["gid"] = str(self.gid)
        if self.mtime_ns is not None:
            seconds, nanos = divmod(self.mtime_ns, 1_000_000_000)
            meta["mtime"] = f"{seconds}.{nanos:09d}".rstrip("0").rstrip(".")
        return meta


def _int(text: str | None) -> int | None:
    try:
        value = int(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and value >= 0 else None


def _seconds_to_ns(text: str | None) -> int | None:
    """`1700000000` or `1700000000.25` as nanoseconds; None when it is not a time."""
    if text is None:
        return None
    seconds, _, fraction = text.strip().partition(".")
    if not seconds.lstrip("-").isdigit() or (fraction and not fraction.isdigit()):
        return None
    nanos = int((fraction + "000000000")[:9]) if fraction else 0
    sign = -1 if seconds.startswith("-") else 1
    return int(seconds) * 1_000_000_000 + sign * nanos

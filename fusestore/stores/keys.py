"""Rules for object keys that hold for every driver, and prefix confinement.

A key is relative to the store's root (the mount root): `dir/file.txt`, or `dir/` for a
directory marker object. Its names (between slashes) are never empty, `.` or `..`: no
file name maps to such a key, and many S3-compatible servers refuse them, so every
driver refuses them alike (they can still be listed where a bucket holds them).

A store opened at a prefix (`s3://bucket/team/a`) maps every key below that prefix and
never names, lists or writes anything outside it. A name filter (`key_prefix=logs-`)
narrows that view further: only the names at the top that begin with it exist.
"""

from __future__ import annotations

import re

from .errors import AccessDenied, InvalidKey, InvalidStoreURL, KeyTooLong

#: Every S3 implementation accepts keys of up to 1024 bytes of UTF-8.
MAX_KEY_BYTES = 1024

_META_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def key_bytes(key: str) -> bytes:
    """The UTF-8 form of `key`; InvalidKey when it has no such form (lone surrogates)."""
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey(f"key is not valid UTF-8: {key!r}", key=key) from None


def check_url_path(path: str, what: str = "prefix") -> str:
    """`path` (a URL's path: a store's prefix, or a file store's root) with one leading
    and one trailing slash taken off; InvalidStoreURL when a name in it is empty, `.` or
    `..`. Such a prefix would name keys no file name maps to (`s3://b/../x` writes
    `../x/f`), or resolve elsewhere than it reads."""
    inner = path.removeprefix("/").removesuffix("/")
    if inner and any(name in ("", ".", "..") for name in inner.split("/")):
        raise InvalidStoreURL(
            f"the store URL's {what} {path!r} has an empty, '.' or '..' name; "
            "write it without them, e.g. s3://BUCKET/team/a or file:///srv/objects"
        )
    return inner


def normalize_prefix(prefix: str) -> str:
    """`team/a`, `/team/a/` and `team/a/` all name the folder `team/a/`; `` is the root.
    InvalidStoreURL for a prefix with an empty, `.` or `..` name (see `check_url_path`)."""
    prefix = check_url_path(prefix)
    return f"{prefix}/" if prefix else ""


class KeySpace:
    """Maps keys relative to a store's root onto the backend's full keys and back.

    Guarantees: every full key it produces starts with the prefix (and the name filter)
    and fits in MAX_KEY_BYTES; `relative` refuses full keys outside them.
    """

    def __init__(self, prefix: str = "", name_filter: str = "") -> None:
        self.prefix = normalize_prefix(prefix)
        self._prefix_len = len(key_bytes(self.prefix))
        if "/" in name_filter:
            raise InvalidStoreURL(
                f"key_prefix {name_filter!r} holds a '/': it is the start of the names at the top "
                "of the store; put folders in the URL's path (s3://bucket/folder)"
            )
        self.name_filter = name_filter

    def in_view(self, key: str) -> bool:
        """Whether `key` (relative) passes the name filter."""
        return key.startswith(self.name_filter)

    def full(self, key: str) -> str:
        """The backend key for `key`; InvalidKey/KeyTooLong when it cannot be stored."""
        if not isinstance(key, str) or not key:
            raise InvalidKey(f"empty or non-text key: {key!r}", key=str(key))
        if "\x00" in key:
            raise InvalidKey(f"key contains a NUL byte: {key!r}", key=key)
        names = (key[:-1] if key.endswith("/") else key).split("/")
        if any(name in ("", ".", "..") for name in names):
            # No file name maps to such a key, and many S3-compatible servers refuse them.
            raise InvalidKey(f"key has an empty, '.' or '..' name: {key!r}", key=key)
        if len(key_bytes(key)) + self._prefix_len > MAX_KEY_BYTES:
            raise KeyTooLong(
                f"key is longer than {MAX_KEY_BYTES} bytes with the store's prefix: {key[:60]!r}…",
                key=key,
            )
        if not self.in_view(key):
            raise AccessDenied(
                f"{key!r} is outside this mount's view: the names at its top begin with {self.name_filter!r}",
                key=key,
            )
        return self.prefix + key

    def full_prefix(self, prefix: str) -> str:
        """The backend listing prefix for a relative listing prefix (may be empty)."""
        if prefix and len(key_bytes(prefix)) + self._prefix_len > MAX_KEY_BYTES:
            raise KeyTooLong(f"listing prefix too long: {prefix[:60]!r}…", key=prefix)
        if not self.in_view(prefix):
            if not self.name_filter.startswith(prefix):
                raise InvalidKey(f"listing prefix {prefix!r} is outside the view", key=prefix)
            prefix = self.name_filter  # the top, or the start of the filter: what passes it
        return self.prefix + prefix

    def relative(self, full_key: str) -> str:
        """The key relative to the prefix; InvalidKey for a key outside the prefix."""
        if not full_key.startswith(self.prefix) or not self.in_view(full_key[len(self.prefix) :]):
            raise InvalidKey(
                f"key {full_key!r} is outside prefix {self.prefix + self.name_filter!r}", key=full_key
            )
        return full_key[len(self.prefix) :]


def check_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    """Validated copy of user metadata: lower-case names, printable ASCII values.

    S3 sends metadata as HTTP headers (`x-amz-meta-NAME`), lower-cases the names and only
    carries ASCII reliably, so every driver holds metadata to the same rules.
    """
    if not metadata:
        return {}
    checked: dict[str, str] = {}
    for name, value in metadata.items():
        if not _META_NAME.match(name):
            raise ValueError(f"metadata name must match [a-z0-9][a-z0-9_-]*: {name!r}")
        if not isinstance(value, str) or not value.isascii() or not value.isprintable():
            raise ValueError(f"metadata value for {name!r} must be printable ASCII: {value!r}")
        checked[name] = value
    return checked

"""Rules for object keys that hold for every driver, and prefix confinement.

A key is relative to the store's root (the mount root): `dir/file.txt`, or `dir/` for a
directory marker object. Its names (between slashes) are never empty, `.` or `..`: no
file name maps to such a key, and many S3-compatible servers refuse them, so every
driver refuses them alike (they can still be listed where a bucket holds them).

A store opened at a prefix (`s3://bucket/team/a`) maps every key below that prefix and
never names, lists or writes anything outside it.
"""

from __future__ import annotations

import re

from .errors import InvalidKey, KeyTooLong

#: Every S3 implementation accepts keys of up to 1024 bytes of UTF-8.
MAX_KEY_BYTES = 1024

_META_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def key_bytes(key: str) -> bytes:
    """The UTF-8 form of `key`; InvalidKey when it has no such form (lone surrogates)."""
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey(f"key is not valid UTF-8: {key!r}", key=key) from None


def normalize_prefix(prefix: str) -> str:
    """`team/a`, `/team/a/` and `team/a/` all name the folder `team/a/`; `` is the root."""
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


class KeySpace:
    """Maps keys relative to a store's root onto the backend's full keys and back.

    Guarantees: every full key it produces starts with the prefix and fits in
    MAX_KEY_BYTES; `relative` refuses full keys outside the prefix.
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = normalize_prefix(prefix)
        self._prefix_len = len(key_bytes(self.prefix))

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
        return self.prefix + key

    def full_prefix(self, prefix: str) -> str:
        """The backend listing prefix for a relative listing prefix (may be empty)."""
        if prefix and len(key_bytes(prefix)) + self._prefix_len > MAX_KEY_BYTES:
            raise KeyTooLong(f"listing prefix too long: {prefix[:60]!r}…", key=prefix)
        return self.prefix + prefix

    def relative(self, full_key: str) -> str:
        """The key relative to the prefix; InvalidKey for a key outside the prefix."""
        if not full_key.startswith(self.prefix):
            raise InvalidKey(f"key {full_key!r} is outside prefix {self.prefix!r}", key=full_key)
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

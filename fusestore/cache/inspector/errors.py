"""What the cache inspector raises: one exception per way a cache cannot be handled."""

from __future__ import annotations


class CacheError(Exception):
    """A cache cannot be described or cleaned. The message is one line and names the fix."""


class NotACache(CacheError):
    """The path is not a fusestore cache directory (missing, not a directory, no store.json)."""


class CacheInUse(CacheError):
    """A running daemon holds the cache's lock."""

"""The persistent local cache: file data in sparse files, metadata and the journal in diskcache."""

from . import room
from .content import BLOCK_SIZE, Content
from .contentstore import ContentStore
from .journal import Journal
from .layout import CacheDir, CacheLocked, default_cache_root
from .snapshot import Snapshot, SourceChanged

__all__ = [
    "BLOCK_SIZE",
    "CacheDir",
    "CacheLocked",
    "Content",
    "ContentStore",
    "Journal",
    "Snapshot",
    "SourceChanged",
    "default_cache_root",
    "room",
]

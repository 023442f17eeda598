"""Store drivers: one contract (`Store`), one error hierarchy, opened by URL."""

from .base import (
    CompletedPart,
    ListPage,
    ObjectInfo,
    ObjectReader,
    PendingUpload,
    Store,
    StoreStats,
    UploadTracker,
)
from .errors import (
    AccessDenied,
    AlreadyExists,
    InvalidKey,
    InvalidStoreURL,
    KeyTooLong,
    NotFound,
    PreconditionFailed,
    QuotaExceeded,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
    errno_for,
)
from .posix import PosixAttrs
from .registry import available_schemes, open_store

__all__ = [
    "AccessDenied",
    "AlreadyExists",
    "CompletedPart",
    "InvalidKey",
    "InvalidStoreURL",
    "KeyTooLong",
    "ListPage",
    "NotFound",
    "ObjectInfo",
    "ObjectReader",
    "PendingUpload",
    "PosixAttrs",
    "PreconditionFailed",
    "QuotaExceeded",
    "Store",
    "StoreError",
    "StoreNotFound",
    "StoreStats",
    "StoreUnavailable",
    "UploadTracker",
    "available_schemes",
    "errno_for",
    "open_store",
]

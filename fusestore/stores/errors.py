"""The one error hierarchy every store driver raises, and its mapping to errno.

Drivers translate their backend's failures (botocore errors, OSError, ...) into these
classes and nothing else, so the layers above handle one vocabulary. `errno_for` is the
single place where a store or OS error becomes the errno a FUSE handler returns.
"""

from __future__ import annotations

import errno as _errno
import re


class StoreError(Exception):
    """Base of every store failure. `retryable` says whether trying again may succeed."""

    errno: int = _errno.EIO
    retryable: bool = False

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class NotFound(StoreError):
    """The object (or the upload id) does not exist."""

    errno = _errno.ENOENT


class AlreadyExists(StoreError):
    """A create-only write (`if_none_match=True`) found an object at the key."""

    errno = _errno.EEXIST


class PreconditionFailed(StoreError):
    """The object's etag is not the one the caller based its change or read on."""

    errno = _errno.ESTALE


class AccessDenied(StoreError):
    """The store refused the credentials or the operation (also: read-only store)."""

    errno = _errno.EACCES


class StoreUnavailable(StoreError):
    """The store did not answer, or answered with a transient failure (5xx, throttling).

    Retryable: nothing about the request was wrong, so it may succeed later.
    """

    errno = _errno.EIO
    retryable = True


class QuotaExceeded(StoreError):
    """The store has no room for the object (quota, full disk, object too large)."""

    errno = _errno.ENOSPC


class InvalidKey(StoreError):
    """The key cannot be stored by this driver (too long, or not a representable name)."""

    errno = _errno.EINVAL


class KeyTooLong(InvalidKey):
    """The key is longer than the 1024 bytes (UTF-8) every object store accepts, or a
    file store's name component is longer than the 255 bytes a directory entry holds."""

    errno = _errno.ENAMETOOLONG


class StoreNotFound(StoreError):
    """The store itself (bucket, directory) does not exist: a configuration problem."""

    errno = _errno.ENODEV


class InvalidStoreURL(ValueError):
    """A store URL or option that cannot be opened: unknown scheme, bad form, bad value."""


_OS_ERRORS: dict[int, type[StoreError]] = {
    _errno.ENOENT: NotFound,
    _errno.EACCES: AccessDenied,
    _errno.EPERM: AccessDenied,
    _errno.EROFS: AccessDenied,
    _errno.ENOSPC: QuotaExceeded,
    _errno.EDQUOT: QuotaExceeded,
    _errno.EFBIG: QuotaExceeded,
    _errno.ENAMETOOLONG: KeyTooLong,
    _errno.EIO: StoreUnavailable,
    _errno.ESTALE: StoreUnavailable,
    _errno.ETIMEDOUT: StoreUnavailable,
    _errno.ENOTCONN: StoreUnavailable,
    _errno.EHOSTDOWN: StoreUnavailable,
}


def from_os_error(exc: OSError, key: str | None = None) -> StoreError:
    """The store error for an OS error met while working on a directory-backed store."""
    cls = _OS_ERRORS.get(exc.errno or 0, StoreError)
    where = f" ({key!r})" if key else ""
    return cls(f"{exc.strerror or exc}{where}", key=key)


def errno_for(exc: BaseException) -> int:
    """The errno that stands for `exc` at the file-system boundary.

    Store errors carry their own; OS errors keep theirs; anything else is an I/O error.
    """
    if isinstance(exc, StoreError):
        return exc.errno
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return _errno.EIO


_OS_ERROR = re.compile(r"\[Errno -?\d+\] [^\"'()]+")


def connection_reason(exc: BaseException) -> str:
    """What stopped a request before any answer, briefly: the OS error where an HTTP
    library's message wraps one ("[Errno 111] Connection refused"), else the message's
    first line."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    found = _OS_ERROR.search(text)
    return found.group(0).rstrip() if found else text

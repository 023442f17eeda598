"""`file:///abs/path`: objects as ordinary files under a directory (local or shared).

Layout, readable by any other program:

- object `a/b.txt` is the file `ROOT/a/b.txt`; its metadata and a write generation sit
  in one extended attribute `user.fusestore` (JSON) on that file;
- directory marker `a/` is the directory `ROOT/a` carrying that same attribute; a
  directory without it exists only while something is below it (S3's implicit
  directories): deletes remove directories they leave empty;
- `ROOT/.fusestore/` holds temporary files, multipart parts and the lock; the name
  `.fusestore` is reserved at every depth (so a store opened on a subdirectory of
  another does not show up in the outer one's listings).

Every write goes to a temporary file in `ROOT/.fusestore/tmp` (the same file system),
is fsynced, and is renamed into place under an exclusive `flock`, so a reader in any
process sees the old object or the new one, never a part, and conditional writes are
exact between processes that share the directory.

Limits that S3 does not have: a key cannot be both an object and a prefix of other keys
(`a` and `a/b`); a marker object holds no bytes; name components are at most 255 bytes.
Symbolic links below ROOT are not followed (not listed, not read).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import stat
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Self
from urllib.parse import SplitResult, quote, unquote

from .base import (
    Body,
    CompletedPart,
    ListPage,
    ObjectInfo,
    ObjectReader,
    PendingUpload,
    Store,
    StoreStats,
    check_write_conditions,
    read_body,
)
from .errors import (
    AccessDenied,
    InvalidKey,
    InvalidStoreURL,
    KeyTooLong,
    NotFound,
    PreconditionFailed,
    StoreError,
    StoreNotFound,
    from_os_error,
)
from .file_entries import XATTR, lookup, object_info, read_attr
from .file_listing import RESERVED, FileLister
from .file_scanner import HELPER, HelperGone
from .keys import check_metadata, check_url_path
from .options import Option, options_query, parse_options

log = logging.getLogger(__name__)

NAME_MAX = 255
_STALE_TEMP_SECONDS = 3600
#: Seconds a store lists in its own process after its listing helper failed.
HELPER_RETRY = 60.0


@contextlib.contextmanager
def _os_errors(key: str | None = None) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise from_os_error(exc, key) from exc


class _FileReader(ObjectReader):
    """Reads a byte range of an open file with pread (no shared file position)."""

    def __init__(self, fd: int, start: int, end: int) -> None:
        self._fd = fd
        self._pos = start
        self._end = max(start, end)

    def read(self, size: int = -1) -> bytes:
        want = self._end - self._pos if size < 0 else min(size, self._end - self._pos)
        chunks = []
        while want > 0:
            chunk = os.pread(self._fd, want, self._pos)
            if not chunk:
                break
            chunks.append(chunk)
            self._pos += len(chunk)
            want -= len(chunk)
        return b"".join(chunks)

    def readinto(self, buffer: memoryview) -> int:
        want = min(len(buffer), self._end - self._pos)
        if want <= 0:
            return 0
        count = os.preadv(self._fd, [buffer[:want]], self._pos)
        self._pos += count
        return count

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class FileStore(Store):
    """Objects as files under `root`. Thread- and process-safe; every method blocks on disk."""

    scheme = "file"
    options: ClassVar[Mapping[str, Option]] = {
        "fsync": Option(bool, True, "fsync each object and its directory before a write returns"),
        "read_only": Option(bool, False, "refuse every write with AccessDenied"),
    }
    min_part_size = 1  # parts are local files: no lower limit

    def __init__(
        self, root: str, *, fsync: bool = True, read_only: bool = False, listing_process: bool = True
    ) -> None:
        super().__init__("")
        if not os.path.isabs(root):
            raise InvalidStoreURL(f"file store root must be an absolute path, not {root!r}")
        self.root = os.path.normpath(root)
        self.fsync = fsync
        self.read_only = read_only
        self._real_root = os.path.realpath(self.root)
        self._internal = os.path.join(self.root, RESERVED)
        self._swept = False
        # Listings read each directory once, not once per page (see file_listing).
        self._lister = FileLister()
        # Pages built in a helper process, on another core: worth listing a walk ahead.
        self.lists_ahead = listing_process
        self._in_process_until = 0.0 if listing_process else float("inf")

    @classmethod
    def from_url(cls, url: SplitResult, options: Mapping[str, Any]) -> Self:
        if url.netloc not in ("", "localhost"):
            raise InvalidStoreURL(
                f"file:// URLs take an absolute local path, file:///abs/path, not {url.geturl()!r}"
            )
        path = unquote(url.path)
        if not path.startswith("/"):
            raise InvalidStoreURL(f"file:// URL needs an absolute path: {url.geturl()!r}")
        check_url_path(path, "directory")
        return cls(path, **parse_options(cls.scheme, cls.options, options))

    def to_url(self) -> str:
        query = options_query(self.options, {"fsync": self.fsync, "read_only": self.read_only})
        base = "file://" + quote(self.root)
        return f"{base}?{query}" if query else base

    # -- paths and attributes ---------------------------------------------------------

    def _path(self, key: str) -> tuple[str, bool]:
        """(file-system path, is a directory marker) for `key`; InvalidKey otherwise."""
        full = self.keys.full(key)
        marker = full.endswith("/")
        parts = (full[:-1] if marker else full).split("/")
        for part in parts:  # KeySpace has refused empty, '.' and '..' names
            if len(part.encode()) > NAME_MAX:
                raise KeyTooLong(f"a name in {key[:60]!r}… is longer than {NAME_MAX} bytes", key=key)
        if RESERVED in parts:
            raise InvalidKey(f"the name {RESERVED} is reserved by the file store: {key!r}", key=key)
        path = os.path.join(self.root, *parts)
        if len(parts) > 1:
            real_parent = os.path.realpath(os.path.dirname(path))
            if real_parent != self._real_root and not real_parent.startswith(self._real_root + os.sep):
                raise InvalidKey(f"{key!r} passes through a symbolic link out of the store", key=key)
        return path, marker

    def _write_attr(self, target: str | int, metadata: Mapping[str, str]) -> None:
        value = json.dumps({"meta": dict(metadata), "gen": uuid.uuid4().hex[:16]}).encode()
        try:
            os.setxattr(target, XATTR, value)
        except OSError as exc:
            if exc.errno == errno.ENOTSUP:
                raise StoreError(
                    f"the file system under {self.root} does not support user extended "
                    "attributes, which the file store needs for metadata"
                ) from exc
            raise

    # -- reading ----------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        path, marker = self._path(key)
        with _os_errors(key):
            info = lookup(key, path, marker)
        if info is None:
            raise NotFound(f"no such object: {key!r}", key=key)
        return info

    def _open_object(
        self, key: str, path: str, etag: str | None = None
    ) -> tuple[int, os.stat_result, dict[str, Any] | None]:
        """(fd, stat, attribute) of the regular file holding `key`; checks `etag`."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP):
                raise NotFound(f"no such object: {key!r}", key=key) from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise NotFound(f"no such object: {key!r}", key=key)
            attr = read_attr(fd)
            if etag is not None and object_info(key, st, attr).etag != etag:
                raise PreconditionFailed(f"etag of {key!r} changed", key=key)
        except BaseException:
            os.close(fd)
            raise
        return fd, st, attr

    def open_range(
        self, key: str, start: int = 0, length: int | None = None, etag: str | None = None
    ) -> ObjectReader:
        path, marker = self._path(key)
        if marker:
            info = self.head(key)
            if etag is not None and info.etag != etag:
                raise PreconditionFailed(f"etag of {key!r} changed", key=key)
            return _FileReader(-1, 0, 0)
        with _os_errors(key):
            fd, st, _ = self._open_object(key, path, etag)
        end = st.st_size if length is None else min(st.st_size, start + length)
        return _FileReader(fd, min(start, st.st_size), end)

    def list(
        self,
        prefix: str = "",
        delimiter: str | None = "/",
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        dir_key = prefix.rpartition("/")[0]
        try:
            dir_path = self._path(dir_key + "/")[0] if dir_key else self.root
        except InvalidKey:
            return ListPage([], [], None)  # no stored key can start with this prefix
        args = (dir_key, dir_path, prefix, delimiter, token, max_keys)
        with _os_errors(prefix):
            if time.monotonic() >= self._in_process_until:
                try:
                    return HELPER.page(self.root, args)
                except HelperGone as exc:
                    log.warning("%s; listing in this process for %.0f s", exc, HELPER_RETRY)
                    self._in_process_until = time.monotonic() + HELPER_RETRY
            return self._lister.page(*args)

    def probe(self) -> None:
        if not os.path.isdir(self.root):
            raise StoreNotFound(f"directory {self.root} does not exist; create it or fix the URL")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise AccessDenied(f"directory {self.root} is not readable by this user")
        super().probe()

    # -- writing ----------------------------------------------------------------------

    def _writable(self) -> None:
        if self.read_only:
            raise AccessDenied(f"{self.to_url()} is read-only")
        if not os.path.isdir(self.root):
            raise StoreNotFound(f"directory {self.root} does not exist; create it or fix the URL")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive between every thread and process that writes to this root."""
        os.makedirs(self._internal, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self._internal, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _temp_dir(self) -> str:
        tmp = os.path.join(self._internal, "tmp")
        os.makedirs(tmp, mode=0o700, exist_ok=True)
        if not self._swept:
            self._swept = True
            cutoff = time.time() - _STALE_TEMP_SECONDS
            for entry in os.scandir(tmp):
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)  # left by a writer that crashed
        return tmp

    @contextlib.contextmanager
    def _temp_file(self) -> Iterator[tuple[int, str]]:
        """A new temporary file (fd, path), removed unless it was renamed into place."""
        path = os.path.join(self._temp_dir(), f"{os.getpid()}-{uuid.uuid4().hex}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            yield fd, path
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    @staticmethod
    def _write_body(fd: int, body: Body) -> None:
        if isinstance(body, bytes | bytearray | memoryview):
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view) :]
            return
        with open(fd, "wb", closefd=False) as out:
            shutil.copyfileobj(body, out, 1024 * 1024)

    def _sync_dirs(self, directory: str, up_to: str) -> None:
        """fsync `directory` and each parent up to `up_to`, so new entries survive power loss."""
        if not self.fsync:
            return
        while True:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            if directory == up_to or len(directory) <= len(self.root):
                return
            directory = os.path.dirname(directory)

    def _make_parents(self, key: str, path: str) -> str:
        """Create the directories above `path`; returns the deepest one that already was."""
        existing = os.path.dirname(path)
        while not os.path.isdir(existing) and len(existing) > len(self.root):
            existing = os.path.dirname(existing)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise InvalidKey(
                f"cannot store {key!r}: a name on its path is an object, and a file store "
                "cannot hold an object that is also a prefix of other keys",
                key=key,
            ) from None
        return existing

    def _commit_file(
        self,
        key: str,
        fd: int,
        temp: str,
        metadata: Mapping[str, str],
        if_match: str | None,
        if_none_match: bool,
    ) -> str:
        """Give the written temporary file its metadata and rename it to `key`'s path."""
        path, _ = self._path(key)
        self._write_attr(fd, metadata)
        if self.fsync:
            os.fsync(fd)
        with self._locked():
            current = lookup(key, path, False)
            check_write_conditions(key, None if current is None else current.etag, if_match, if_none_match)
            existing = self._make_parents(key, path)
            if os.path.isdir(path):
                raise InvalidKey(
                    f"cannot store {key!r}: it is a prefix of other keys, and a file store "
                    "cannot hold an object that is also a prefix",
                    key=key,
                )
            os.rename(temp, path)
            info = object_info(key, os.fstat(fd), read_attr(fd))
        self._sync_dirs(os.path.dirname(path), existing)
        return info.etag

    def _commit_marker(
        self, key: str, metadata: Mapping[str, str], if_match: str | None, if_none_match: bool
    ) -> str:
        path, _ = self._path(key)
        with self._locked():
            current = lookup(key, path, True)
            check_write_conditions(key, None if current is None else current.etag, if_match, if_none_match)
            existing = self._make_parents(key, os.path.join(path, "x"))  # and the marker's own
            self._write_attr(path, metadata)
            info = lookup(key, path, True)
        self._sync_dirs(path, existing)
        assert info is not None
        return info.etag

    def put(
        self,
        key: str,
        body: Body,
        metadata: Mapping[str, str] | None = None,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        _, marker = self._path(key)
        meta = check_metadata(dict(metadata or {}))
        self._writable()
        with _os_errors(key):
            if marker:
                if read_body(body):
                    raise InvalidKey(f"a file store's marker object {key!r} cannot hold bytes", key=key)
                return self._commit_marker(key, meta, if_match, if_none_match)
            with self._temp_file() as (fd, temp):
                self._write_body(fd, body)
                return self._commit_file(key, fd, temp, meta, if_match, if_none_match)

    # -- multipart --------------------------------------------------------------------

    def _upload_dir(self, upload_id: str) -> str:
        if not upload_id or not upload_id.isalnum():
            raise NotFound(f"no multipart upload {upload_id!r}")
        return os.path.join(self._internal, "uploads", upload_id)

    def _upload_info(self, key: str, upload_id: str) -> dict[str, Any]:
        try:
            with open(os.path.join(self._upload_dir(upload_id), "info.json")) as f:
                info: dict[str, Any] = json.load(f)
        except (FileNotFoundError, NotADirectoryError, ValueError):
            raise NotFound(f"no multipart upload {upload_id!r} for {key!r}", key=key) from None
        if info.get("key") != key:
            raise NotFound(f"no multipart upload {upload_id!r} for {key!r}", key=key)
        return info

    def start_multipart(self, key: str, metadata: Mapping[str, str] | None = None) -> str:
        _, marker = self._path(key)
        if marker:
            raise InvalidKey(f"a file store's marker object {key!r} cannot hold bytes", key=key)
        meta = check_metadata(dict(metadata or {}))
        self._writable()
        upload_id = uuid.uuid4().hex
        with _os_errors(key):
            directory = self._upload_dir(upload_id)
            os.makedirs(directory, mode=0o700)
            info = {"key": key, "metadata": meta, "initiated": time.time()}
            with open(os.path.join(directory, "info.json"), "w") as f:
                json.dump(info, f)
        return upload_id

    def put_part(self, key: str, upload_id: str, number: int, body: Body) -> CompletedPart:
        self._path(key)
        with _os_errors(key):
            directory = self._upload_dir(upload_id)
            self._upload_info(key, upload_id)
            etag = uuid.uuid4().hex
            temp = os.path.join(directory, f"{number}.{etag}.tmp")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                self._write_body(fd, body)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, os.path.join(directory, f"{number}.{etag}"))
        return CompletedPart(number, f'"{etag}"')

    def complete_multipart(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[CompletedPart],
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        self._path(key)
        self._writable()
        with _os_errors(key):
            info = self._upload_info(key, upload_id)
            directory = self._upload_dir(upload_id)
            with self._temp_file() as (fd, temp):
                for part in parts:
                    part_id = part.etag.strip('"')  # ids we issued: hex, never a path
                    part_path = os.path.join(directory, f"{part.number}.{part_id}")
                    try:
                        if not part_id.isalnum():
                            raise FileNotFoundError(part_path)
                        src = os.open(part_path, os.O_RDONLY | os.O_CLOEXEC)
                    except FileNotFoundError:
                        raise StoreError(f"part {part.number} of {key!r} was not uploaded", key=key) from None
                    try:
                        _copy_fd(src, fd)
                    finally:
                        os.close(src)
                etag = self._commit_file(key, fd, temp, info["metadata"], if_match, if_none_match)
            shutil.rmtree(directory, ignore_errors=True)
        return etag

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self._path(key)
        with _os_errors(key):
            try:
                self._upload_info(key, upload_id)
            except NotFound:
                return
            shutil.rmtree(self._upload_dir(upload_id), ignore_errors=True)

    def list_multipart(self, prefix: str = "") -> builtins.list[PendingUpload]:
        uploads_dir = os.path.join(self._internal, "uploads")
        pending = []
        with _os_errors(prefix):
            try:
                entries = list(os.scandir(uploads_dir))
            except FileNotFoundError:
                return []
            for entry in entries:
                try:
                    with open(os.path.join(entry.path, "info.json")) as f:
                        info = json.load(f)
                except (OSError, ValueError):
                    continue  # being created or removed right now
                if info["key"].startswith(prefix):
                    pending.append(PendingUpload(info["key"], entry.name, info["initiated"]))
        return sorted(pending)

    # -- copy and delete --------------------------------------------------------------

    def copy(
        self,
        src: str,
        dst: str,
        metadata: Mapping[str, str] | None = None,
        *,
        expect: ObjectInfo | None = None,
    ) -> str:
        src_path, src_marker = self._path(src)
        _, dst_marker = self._path(dst)
        meta = None if metadata is None else check_metadata(dict(metadata))
        self._writable()
        with _os_errors(src):
            if src_marker or dst_marker:
                source = self.head(src)
                if expect is not None and source.etag != expect.etag:
                    raise PreconditionFailed(f"etag of {src!r} changed", key=src)
                if source.size:
                    raise InvalidKey(f"a file store's marker object {dst!r} cannot hold bytes", key=dst)
                new_meta = dict(source.metadata or {}) if meta is None else meta
                if dst_marker:
                    return self._commit_marker(dst, new_meta, None, False)
                return self.put(dst, b"", new_meta)
            src_fd, _, attr = self._open_object(src, src_path, None if expect is None else expect.etag)
            try:
                with self._temp_file() as (fd, temp):
                    _copy_fd(src_fd, fd)
                    new_meta = dict((attr or {}).get("meta", {})) if meta is None else meta
                    return self._commit_file(dst, fd, temp, new_meta, None, False)
            finally:
                os.close(src_fd)

    def delete_many(self, keys: Iterable[str], etags: Mapping[str, str] | None = None) -> None:
        targets = [(key, *self._path(key)) for key in keys]
        self._writable()
        if not targets:
            return
        etags = etags or {}
        with _os_errors(), self._locked():
            for key, path, marker in targets:
                wanted = etags.get(key)
                if wanted is not None:
                    # Under the store's lock: exact against writers of other processes.
                    present = lookup(key, path, marker)
                    if present is None or present.etag != wanted:
                        continue
                if marker:
                    with contextlib.suppress(OSError):  # absent, or no marker there
                        os.removexattr(path, XATTR)
                else:
                    with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
                        os.unlink(path)
                self._prune(path if marker else os.path.dirname(path))

    def _prune(self, directory: str) -> None:
        """Remove `directory` and its parents while they are empty and not markers."""
        while directory != self.root and directory.startswith(self.root + os.sep):
            if read_attr(directory) is not None:
                return
            try:
                os.rmdir(directory)
            except OSError:
                return  # not empty, or already gone
            directory = os.path.dirname(directory)

    def stat_store(self) -> StoreStats:
        with _os_errors():
            vfs = os.statvfs(self.root)
        return StoreStats(
            total_bytes=vfs.f_blocks * vfs.f_frsize,
            free_bytes=vfs.f_bavail * vfs.f_frsize,
            used_bytes=(vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize,
        )


def _copy_fd(src: int, dst: int) -> None:
    """Append all of `src` (from offset 0) to `dst`, in the kernel where it can."""
    offset = 0
    while True:
        try:
            copied = os.copy_file_range(src, dst, 1 << 30, offset)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            with open(src, "rb", closefd=False) as fin, open(dst, "ab", closefd=False) as fout:
                fin.seek(offset)
                shutil.copyfileobj(fin, fout, 1024 * 1024)
            return
        if copied == 0:
            return
        offset += copied

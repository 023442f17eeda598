"""The memory driver's own promises, the errno mapping and the s3fs metadata format."""

from __future__ import annotations

import errno

import pytest

from fusestore.stores import (
    AccessDenied,
    AlreadyExists,
    InvalidStoreURL,
    KeyTooLong,
    NotFound,
    PosixAttrs,
    PreconditionFailed,
    QuotaExceeded,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
    errno_for,
    memory,
    open_store,
)
from fusestore.stores.memory import MemoryStore


def test_named_memory_stores_share_their_objects() -> None:
    open_store("memory://shared-test").put("k", b"v")
    assert open_store("memory://shared-test").get_range("k") == b"v"
    assert open_store("memory://shared-test/k-prefix").list().objects == []
    MemoryStore.forget("shared-test")
    with pytest.raises(NotFound):
        open_store("memory://shared-test").head("k")


def test_anonymous_memory_stores_are_private() -> None:
    open_store("memory://").put("k", b"v")
    with pytest.raises(NotFound):
        open_store("memory://").head("k")


def test_memory_capacity_is_a_quota() -> None:
    store = open_store("memory://", capacity=10)
    store.put("a", b"12345678")
    store.put("a", b"1234567890")  # a replacement counts only its own size
    with pytest.raises(QuotaExceeded):
        store.put("b", b"x")
    assert store.stat_store().free_bytes == 0


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (NotFound("x"), errno.ENOENT),
        (AlreadyExists("x"), errno.EEXIST),
        (PreconditionFailed("x"), errno.ESTALE),
        (AccessDenied("x"), errno.EACCES),
        (StoreUnavailable("x"), errno.EIO),
        (QuotaExceeded("x"), errno.ENOSPC),
        (KeyTooLong("x"), errno.ENAMETOOLONG),
        (StoreNotFound("x"), errno.ENODEV),
        (StoreError("x"), errno.EIO),
        (FileNotFoundError(errno.ENOENT, "gone"), errno.ENOENT),
        (PermissionError(errno.EPERM, "no"), errno.EPERM),
        (ValueError("bug"), errno.EIO),
    ],
)
def test_every_error_has_one_errno(exc: BaseException, code: int) -> None:
    assert errno_for(exc) == code


@pytest.mark.parametrize(
    ("meta", "attrs"),
    [
        (
            {"mode": "33188", "uid": "0", "gid": "0", "mtime": "1700000000"},
            PosixAttrs(0o100644, 0, 0, 1_700_000_000_000_000_000),
        ),
        ({"mtime": "1700000000.5"}, PosixAttrs(mtime_ns=1_700_000_000_500_000_000)),
        ({"mode": "rwx", "uid": "-1", "mtime": "yesterday"}, PosixAttrs()),
        ({}, PosixAttrs()),
    ],
)
def test_s3fs_metadata_is_read_leniently(meta: dict[str, str], attrs: PosixAttrs) -> None:
    assert PosixAttrs.from_metadata(meta) == attrs


def test_posix_attributes_round_trip_with_nanoseconds() -> None:
    attrs = PosixAttrs(0o40755, 1000, 1000, 1_700_000_000_123_456_789)
    assert attrs.to_metadata()["mtime"] == "1700000000.123456789"
    assert PosixAttrs.from_metadata(attrs.to_metadata(), directory=True) == attrs


def test_metadata_names_and_values_are_checked() -> None:
    store = open_store("memory://")
    with pytest.raises(ValueError, match="metadata name"):
        store.put("k", b"", {"Mode": "1"})
    with pytest.raises(ValueError, match="printable ASCII"):
        store.put("k", b"", {"note": "café"})


def test_a_key_prefix_view_narrows_a_store_to_the_names_that_begin_with_it() -> None:
    name = "view-test"
    try:
        whole = open_store(f"memory://{name}")
        for key in ("logs-1.gz", "logs-dir/x", "logsx", "other", "logs-"):
            whole.put(key, b"")
        view = open_store(f"memory://{name}?key_prefix=logs-")
        assert view.to_url() == f"memory://{name}?key_prefix=logs-"
        page = view.list("")
        assert [o.key for o in page.objects] == ["logs-", "logs-1.gz"] and page.prefixes == ["logs-dir/"]
        assert [o.key for o in view.list("logs-dir/").objects] == ["logs-dir/x"]
        assert sorted(o.key for o in view.iter_objects()) == ["logs-", "logs-1.gz", "logs-dir/x"]
        view.put("logs-2.gz", b"new")
        with pytest.raises(AccessDenied, match="outside this mount's view"):
            view.put("other2", b"")
        with pytest.raises(InvalidStoreURL, match="holds a '/'"):
            open_store(f"memory://{name}?key_prefix=a/b")
    finally:
        MemoryStore.forget(name)


def test_a_memory_listing_in_small_pages_does_work_linear_in_its_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each page builds the infos of its own objects only, and seeks past common
    prefixes: never the whole store per page."""
    built = [0]
    info = memory._Object.info

    def counting_info(self: memory._Object, key: str) -> object:
        built[0] += 1
        return info(self, key)

    monkeypatch.setattr(memory._Object, "info", counting_info)
    cost = {}
    for size in (200, 400):
        store = MemoryStore()
        for i in range(size):
            store.put(f"d/f{i:05d}", b"")
            store.put(f"d/sub{i % 7}/x{i}", b"")
            store.put(f"other/{i}", b"")
        built[0] = 0
        keys: list[str] = []
        prefixes: list[str] = []
        token = None
        while True:
            page = store.list("d/", "/", token, 10)
            keys += [o.key for o in page.objects]
            prefixes += page.prefixes
            if page.next_token is None:
                break
            token = page.next_token
        assert keys == [f"d/f{i:05d}" for i in range(size)]
        assert prefixes == [f"d/sub{i}/" for i in range(7)]
        cost[size] = built[0]
        assert built[0] <= 2 * size, built[0]  # its own objects, plus one look-ahead a page
    assert cost[400] <= 2.5 * cost[200], cost


def test_a_memory_listing_sees_keys_removed_and_put_back_once() -> None:
    store = MemoryStore()
    for key in ["a", "b", "c"]:
        store.put(key, b"")
    assert [o.key for o in store.list("", None).objects] == ["a", "b", "c"]
    store.delete("b")
    store.put("b", b"again")
    store.put("0", b"")
    store.delete("c")
    assert [o.key for o in store.list("", None).objects] == ["0", "a", "b"]
    store.delete("a")
    assert [o.key for o in store.list("", None, "0", 1).objects] == ["b"]

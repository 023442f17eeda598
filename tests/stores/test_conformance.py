"""The driver contract, checked unchanged against every driver (memory, file, S3 on moto's
HTTP server). A new driver passes this file before it ships."""

from __future__ import annotations

import io
import os
import tempfile
import time

import pytest
from storetools import all_entries, all_keys, populate

from fusestore.stores import (
    AccessDenied,
    AlreadyExists,
    CompletedPart,
    InvalidKey,
    KeyTooLong,
    NotFound,
    PosixAttrs,
    PreconditionFailed,
    Store,
    StoreError,
    open_store,
)

MiB = 1024 * 1024
POSIX = PosixAttrs(mode=0o100640, uid=1000, gid=100, mtime_ns=1_700_000_000_250_000_000)

# -- bytes and metadata ---------------------------------------------------------------


def test_put_then_get_returns_the_same_bytes(store: Store) -> None:
    data = os.urandom(100_000)
    store.put("a/b/file.bin", data)
    assert store.get_range("a/b/file.bin") == data


def test_head_reports_size_etag_and_recent_mtime(store: Store) -> None:
    etag = store.put("f", b"12345")
    info = store.head("f")
    assert (info.key, info.size, info.etag) == ("f", 5, etag)
    assert abs(info.mtime - time.time()) < 120


def test_posix_and_custom_metadata_round_trip(store: Store) -> None:
    meta = {**POSIX.to_metadata(), "owner-tag": "build_42"}
    store.put("m", b"x", meta)
    info = store.head("m")
    assert info.metadata == meta
    assert PosixAttrs.from_metadata(info.metadata) == POSIX


def test_overwrite_replaces_bytes_metadata_and_etag(store: Store) -> None:
    first = store.put("k", b"one", {"mode": "33188"})
    second = store.put("k", b"second version", {"uid": "7"})
    assert first != second
    assert store.get_range("k") == b"second version"
    assert store.head("k").metadata == {"uid": "7"}


def test_put_accepts_a_file_object(store: Store) -> None:
    store.put("from-file", io.BytesIO(b"streamed body"))
    assert store.get_range("from-file") == b"streamed body"


def test_empty_object(store: Store) -> None:
    store.put("empty", b"")
    assert store.head("empty").size == 0
    assert store.get_range("empty") == b""


# -- ranged reads -----------------------------------------------------------------------


def test_range_in_the_middle(store: Store) -> None:
    store.put("r", b"0123456789")
    assert store.get_range("r", 3, 4) == b"3456"


def test_range_to_the_end(store: Store) -> None:
    store.put("r", b"0123456789")
    assert store.get_range("r", 7) == b"789"


def test_range_running_past_the_end_is_cut(store: Store) -> None:
    store.put("r", b"0123456789")
    assert store.get_range("r", 8, 100) == b"89"


def test_range_starting_at_or_past_the_end_is_empty(store: Store) -> None:
    store.put("r", b"0123456789")
    assert store.get_range("r", 10, 5) == b""
    assert store.get_range("r", 50) == b""
    assert store.get_range("r", 3, 0) == b""


def test_range_of_an_empty_object_is_empty(store: Store) -> None:
    store.put("e", b"")
    assert store.get_range("e", 0, 10) == b""
    assert store.get_range("e", 5) == b""


def test_reader_streams_in_pieces(store: Store) -> None:
    data = os.urandom(3 * MiB + 17)
    store.put("big", data)
    with store.open_range("big", 1, None) as reader:
        pieces = list(reader)
    assert b"".join(pieces) == data[1:]


def test_reader_fills_buffers_in_place(store: Store) -> None:
    data = os.urandom(3 * MiB + 17)
    store.put("big", data)
    buffer = memoryview(bytearray(MiB // 2 + 3))
    pieces = []
    with store.open_range("big", 5, 2 * MiB + 3) as reader:
        while count := reader.readinto(buffer):
            pieces.append(bytes(buffer[:count]))
        assert reader.readinto(buffer) == 0
    assert b"".join(pieces) == data[5 : 5 + 2 * MiB + 3]


def test_reader_mixes_read_and_readinto(store: Store) -> None:
    store.put("r", b"0123456789")
    buffer = memoryview(bytearray(4))
    with store.open_range("r", 1, None) as reader:
        assert reader.read(2) == b"12"
        assert reader.readinto(buffer) == 4
        assert bytes(buffer) == b"3456"
        assert reader.read() == b"789"
        assert reader.readinto(buffer) == 0
    with store.open_range("r", 0, None) as reader:
        assert reader.readinto(buffer) == 4
        assert reader.read(3) == b"456"
        assert reader.readinto(buffer) == 3
        assert bytes(buffer[:3]) == b"789"
        assert reader.read() == b""


def test_reader_of_nothing_fills_nothing(store: Store) -> None:
    store.put("r", b"0123456789")
    store.put("e", b"")
    buffer = memoryview(bytearray(8))
    for key, start in (("r", 10), ("r", 50), ("e", 0)):
        with store.open_range(key, start, None) as reader:
            assert reader.readinto(buffer) == 0


def test_read_with_the_current_etag_succeeds_and_a_stale_one_fails(store: Store) -> None:
    old = store.put("v", b"version 1")
    assert store.get_range("v", etag=old) == b"version 1"
    store.put("v", b"version 2")
    with pytest.raises(PreconditionFailed):
        store.get_range("v", etag=old)


# -- missing objects ----------------------------------------------------------------


def test_missing_object_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.head("nope")
    with pytest.raises(NotFound):
        store.get_range("nope")
    with pytest.raises(NotFound):
        store.get_range("nope", 2, 3)


def test_deleted_object_is_gone(store: Store) -> None:
    store.put("d", b"x")
    store.delete("d")
    with pytest.raises(NotFound):
        store.head("d")
    assert all_keys(store) == []


def test_deleting_missing_keys_is_fine(store: Store) -> None:
    store.delete_many(["never-was", "dir/never-was"])


def test_a_delete_conditioned_on_an_etag_keeps_an_object_replaced_since(store: Store) -> None:
    """A delete given the etag of the version it means removes that version only: an
    object another client put there since stays (no error), and so does one whose etag
    never matched; a key absent already is fine. Keys given no etag go as ever."""
    old = store.put("a", b"first")
    store.put("a", b"second")  # another client's newer version
    gone = store.put("b", b"mine")
    store.put("c", b"plain")
    store.put("dir/", b"")
    marker = store.head("dir/").etag
    store.delete_many(
        ["a", "b", "c", "dir/", "never-was"], etags={"a": old, "b": gone, "dir/": marker, "never-was": old}
    )
    assert store.get_range("a") == b"second"
    assert all_keys(store) == ["a"]


# -- listing --------------------------------------------------------------------------


def test_listing_with_delimiter_rolls_up_prefixes(store: Store) -> None:
    populate(store, ["top.txt", "dir/a", "dir/b", "dir/sub/c", "other/d", "dir2"])
    page = store.list("", "/")
    assert [o.key for o in page.objects] == ["dir2", "top.txt"]
    assert page.prefixes == ["dir/", "other/"]
    assert page.next_token is None
    assert all_entries(store, "dir/") == (["dir/a", "dir/b"], ["dir/sub/"])


def test_listing_without_delimiter_is_recursive(store: Store) -> None:
    keys = ["b", "a/x", "a-b", "a/y/z", "a0", "é", "Z"]
    populate(store, keys)
    listed = all_keys(store)
    assert sorted(listed) == sorted(keys)  # each once; AWS and local drivers sort by bytes


def test_listing_with_a_partial_name_prefix(store: Store) -> None:
    populate(store, ["log-1", "log-2", "log/inner", "logo", "zzz"])
    keys, prefixes = all_entries(store, "log")
    assert keys == ["log-1", "log-2", "logo"]
    assert prefixes == ["log/"]


def test_listing_an_absent_prefix_is_empty(store: Store) -> None:
    page = store.list("no/such/dir/", "/")
    assert (page.objects, page.prefixes, page.next_token) == ([], [], None)


def test_listed_objects_carry_size_etag_and_mtime(store: Store) -> None:
    etag = store.put("dir/f", b"abc", {"mode": "33261"})
    (info,) = store.list("dir/", "/").objects
    assert (info.key, info.size, info.etag) == ("dir/f", 3, etag)
    assert abs(info.mtime - time.time()) < 120
    assert info.metadata is None or info.metadata == {"mode": "33261"}
    assert (info.metadata is not None) == store.list_has_metadata


def test_small_pages_cover_everything_once(store: Store) -> None:
    keys = [f"p/{i:03d}" for i in range(25)] + ["p/sub/x", "p/sub2/y"]
    populate(store, keys)
    objects, prefixes = all_entries(store, "p/", max_keys=4)
    assert objects == [f"p/{i:03d}" for i in range(25)]
    assert prefixes == ["p/sub/", "p/sub2/"]


@pytest.mark.slow
def test_listing_pages_through_more_than_1000_keys(store: Store) -> None:
    keys = [f"many/{i:05d}" for i in range(1100)]
    populate(store, keys)
    first = store.list("many/", "/")
    assert len(first.objects) == 1000 and first.next_token is not None
    assert all_keys(store, "many/") == keys


def test_directory_markers_list_as_objects_and_prefixes(store: Store) -> None:
    store.put("empty-dir/", b"", {"mode": str(0o40755)})
    store.put("full-dir/", b"")
    store.put("full-dir/child", b"c")
    assert store.list("", "/").prefixes == ["empty-dir/", "full-dir/"]
    assert [o.key for o in store.list("full-dir/", "/").objects] == ["full-dir/", "full-dir/child"]
    assert all_keys(store) == ["empty-dir/", "full-dir/", "full-dir/child"]
    store.delete("empty-dir/")
    assert store.list("", "/").prefixes == ["full-dir/"]


def test_directory_markers_keep_their_metadata(store: Store) -> None:
    """Where a directory's mode and owner live (see SERVER_LIMITS for a server that drops them)."""
    store.put("empty-dir/", b"", {"mode": str(0o40700), "uid": "1000"})
    assert store.head("empty-dir/").metadata == {"mode": str(0o40700), "uid": "1000"}


@pytest.mark.parametrize(
    "key",
    [
        "with space.txt",
        "dir with space/file name",
        "unicode-ñäß-日本語-😀",
        "plus+sign+c++",
        "percent%20not%2Fdecoded%",
        "query?and&equals=#hash",
        "quote'and\"double",
        "tilde~star*at@comma,semicolon;",
        "trailing space ",
    ],
)
def test_odd_characters_in_keys_round_trip(store: Store, key: str) -> None:
    store.put(key, key.encode())
    assert store.get_range(key) == key.encode()
    assert store.head(key).size == len(key.encode())
    assert all_keys(store) == [key]
    parent, _, _ = key.rpartition("/")
    if parent:
        assert store.list("", "/").prefixes == [parent + "/"]
    store.delete(key)
    assert all_keys(store) == []


# -- conditional writes -----------------------------------------------------------------


def test_create_only_put(store: Store) -> None:
    store.put("new", b"first", if_none_match=True)
    with pytest.raises(AlreadyExists):
        store.put("new", b"second", if_none_match=True)
    assert store.get_range("new") == b"first"


def test_put_if_match(store: Store) -> None:
    etag = store.put("c", b"base")
    newer = store.put("c", b"mine", if_match=etag)
    with pytest.raises(PreconditionFailed):
        store.put("c", b"stale writer", if_match=etag)
    assert store.get_range("c") == b"mine"
    assert store.head("c").etag == newer


def test_put_if_match_on_a_missing_key_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.put("gone", b"x", if_match='"0123456789abcdef"')
    with pytest.raises(NotFound):
        store.head("gone")


# -- multipart ------------------------------------------------------------------------


def _parts(store: Store, key: str, upload_id: str, chunks: list[bytes]) -> list[CompletedPart]:
    parts = [store.put_part(key, upload_id, n, c) for n, c in enumerate(chunks, 1)]
    assert [part.number for part in parts] == list(range(1, len(chunks) + 1))
    return parts


def test_multipart_upload_of_several_parts(store: Store) -> None:
    chunks = [os.urandom(5 * MiB), os.urandom(5 * MiB), b"tail"]
    upload_id = store.start_multipart("mp/obj", {"mode": "33188"})
    parts = _parts(store, "mp/obj", upload_id, chunks)
    with pytest.raises(NotFound):
        store.head("mp/obj")  # nothing at the key before completion
    etag = store.complete_multipart("mp/obj", upload_id, parts)
    info = store.head("mp/obj")
    assert (info.size, info.etag, info.metadata) == (10 * MiB + 4, etag, {"mode": "33188"})
    assert store.get_range("mp/obj") == b"".join(chunks)
    assert store.list_multipart() == []


def test_aborted_multipart_leaves_nothing(store: Store) -> None:
    upload_id = store.start_multipart("ab/obj")
    _parts(store, "ab/obj", upload_id, [b"x" * 1000])
    assert [(u.key, u.upload_id) for u in store.list_multipart()] == [("ab/obj", upload_id)]
    store.abort_multipart("ab/obj", upload_id)
    assert store.list_multipart() == []
    with pytest.raises(NotFound):
        store.head("ab/obj")
    store.abort_multipart("ab/obj", upload_id)  # aborting again is fine


def test_multipart_complete_respects_conditions(store: Store) -> None:
    etag = store.put("cond", b"existing")
    upload_id = store.start_multipart("cond")
    parts = _parts(store, "cond", upload_id, [b"replacement"])
    with pytest.raises(AlreadyExists):
        store.complete_multipart("cond", upload_id, parts, if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.complete_multipart("cond", upload_id, parts, if_match='"not-the-etag"')
    assert store.get_range("cond") == b"existing"
    store.complete_multipart("cond", upload_id, parts, if_match=etag)
    assert store.get_range("cond") == b"replacement"


def test_each_way_of_replacing_an_object_gives_it_a_new_etag(store: Store) -> None:
    """The etag is the version a mount bases its changes and its cached copy on: whatever
    replaces the object with other bytes (a PUT, a completed upload, a copy onto it), the
    etag changes, so another client's change is seen and never taken for ours."""
    seen = [store.put("v", b"one")]
    upload_id = store.start_multipart("v")
    seen.append(store.complete_multipart("v", upload_id, _parts(store, "v", upload_id, [b"two"])))
    assert store.head("v").etag == seen[-1]
    store.put("src", b"three")
    seen.append(store.copy("src", "v"))
    assert store.head("v").etag == seen[-1]
    seen.append(store.put("v", b"four"))
    assert store.head("v").etag == seen[-1]
    assert len(set(seen)) == len(seen), f"an etag came back after a replacement: {seen}"


def test_put_file_uses_multipart_above_the_threshold(store: Store) -> None:
    data = os.urandom(11 * MiB + 5)
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        etag = store.put_file(
            "pf", f, len(data), {"uid": "3"}, multipart_threshold=5 * MiB, part_size=5 * MiB
        )
    assert store.head("pf").etag == etag
    assert store.get_range("pf") == data
    assert store.head("pf").metadata == {"uid": "3"}
    assert store.list_multipart() == []


def test_put_file_sends_exactly_size_bytes(store: Store) -> None:
    with tempfile.TemporaryFile() as f:
        f.write(b"0123456789" * 10)
        f.flush()
        store.put_file("small", f, 60)
    assert store.get_range("small") == (b"0123456789" * 6)


def test_failed_put_file_leaves_old_object_and_no_upload(store: Store) -> None:
    store.put("keep", b"old contents")
    data = os.urandom(6 * MiB)
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        with pytest.raises(AlreadyExists):
            store.put_file(
                "keep", f, len(data), multipart_threshold=5 * MiB, part_size=5 * MiB, if_none_match=True
            )
    assert store.get_range("keep") == b"old contents"
    assert store.list_multipart() == []


@pytest.mark.parametrize("size", [1000, 6 * MiB], ids=["put", "multipart"])
def test_put_file_stores_nothing_when_its_check_fails_after_the_read(store: Store, size: int) -> None:
    store.put("snap", b"old contents")
    checked: list[int] = []

    def check() -> None:  # the source changed while it was read
        checked.append(len(store.list_multipart()))
        raise ValueError("changed")

    with tempfile.TemporaryFile() as f:
        f.write(os.urandom(size))
        f.flush()
        with pytest.raises(ValueError, match="changed"):
            store.put_file("snap", f, size, multipart_threshold=5 * MiB, part_size=5 * MiB, check=check)
    assert checked == [0 if size < 5 * MiB else 1], "checked once, after the read, before committing"
    assert store.get_range("snap") == b"old contents"
    assert store.list_multipart() == []


# -- copy and delete --------------------------------------------------------------------


def test_copy_keeps_bytes_and_metadata(store: Store) -> None:
    store.put("src", b"payload", {"mode": "33188", "uid": "5"})
    etag = store.copy("src", "dst/copy")
    assert store.get_range("dst/copy") == b"payload"
    assert store.head("dst/copy").metadata == {"mode": "33188", "uid": "5"}
    assert store.head("dst/copy").etag == etag
    assert store.get_range("src") == b"payload"


def test_copy_can_replace_metadata(store: Store) -> None:
    store.put("src", b"payload", {"mode": "33188"})
    store.copy("src", "dst", {"mode": "33261"})
    assert store.head("dst").metadata == {"mode": "33261"}


def test_copy_onto_itself_replaces_only_metadata(store: Store) -> None:
    data = os.urandom(1000)
    old = store.put("self", data, {"mode": "33188", "mtime": "1"})
    new = store.copy("self", "self", {"mode": "33261", "mtime": "2"})
    assert new != old or store.head("self").metadata == {"mode": "33261", "mtime": "2"}
    assert store.head("self").metadata == {"mode": "33261", "mtime": "2"}
    assert store.get_range("self") == data


def test_copy_of_a_source_seen_before_is_conditional_on_its_etag(store: Store, kind: str) -> None:
    store.put("src", b"first", {"mode": "33188"})
    seen = store.head("src")
    etag = store.copy("src", "dst", None, expect=seen)
    assert store.get_range("dst") == b"first"
    assert store.head("dst").etag == etag
    store.put("src", b"second version", {"mode": "33188"})
    try:
        store.copy("src", "other", None, expect=seen)
    except PreconditionFailed:
        with pytest.raises(NotFound):
            store.head("other")
    else:
        # S3 sends CopySourceIfMatch; moto's server ignores it and copies what is there.
        assert kind == "s3", "the copy of a changed source must fail"
        assert store.get_range("other") == b"second version"
    store.delete("src")
    with pytest.raises((NotFound, PreconditionFailed)):
        store.copy("src", "other", None, expect=seen)


def test_listing_pending_uploads_by_prefix(store: Store) -> None:
    first = store.start_multipart("up/a")
    store.start_multipart("other/b")
    assert [(u.key, u.upload_id) for u in store.list_multipart("up/")] == [("up/a", first)]
    assert len(store.list_multipart()) == 2


def test_copy_of_a_missing_object_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.copy("missing", "dst")
    with pytest.raises(NotFound):
        store.head("dst")


@pytest.mark.slow
def test_batch_delete_of_more_than_1000_keys(store: Store) -> None:
    keys = [f"del/{i:05d}" for i in range(1001)] + ["keep/me"]
    populate(store, keys)
    store.delete_many(keys[:-1])
    assert all_keys(store) == ["keep/me"]


# -- errors and confinement ---------------------------------------------------------------


def test_writes_refused_by_the_backend_are_access_denied(denied_store: Store) -> None:
    with pytest.raises(AccessDenied):
        denied_store.put("x", b"y")
    with pytest.raises(AccessDenied):
        denied_store.delete_many(["x"])
    with pytest.raises(AccessDenied):
        denied_store.start_multipart("x")


def test_keys_longer_than_1024_bytes_are_refused(store: Store) -> None:
    with pytest.raises(KeyTooLong):
        store.put("d/" + "é" * 512, b"x")


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "./x", "a/./b", "a/..", "..", "x\x00y"])
def test_keys_that_are_no_path_are_refused_everywhere(store: Store, key: str) -> None:
    with pytest.raises(InvalidKey):
        store.put(key, b"x")
    assert all_keys(store) == []


def test_prefix_confines_reads_and_writes(stores) -> None:  # type: ignore[no-untyped-def]
    root = stores.root()
    populate(root, ["outside.txt", "team/b/secret", "team/a/inside", "team/ab/neighbour"])
    view = stores.at("team/a")
    assert all_keys(view) == ["inside"]
    assert view.list("", "/").prefixes == []
    view.put("new/file", b"n")
    for escape in ("../escape", "../b/secret", "x/../../b/secret"):
        with pytest.raises(InvalidKey):
            view.put(escape, b"e")
        with pytest.raises(InvalidKey):
            view.head(escape)
        with pytest.raises(InvalidKey):
            view.delete(escape)
    view.delete("inside")
    assert sorted(all_keys(root)) == ["outside.txt", "team/a/new/file", "team/ab/neighbour", "team/b/secret"]


def test_configuration_round_trips_through_the_url(store: Store) -> None:
    again = open_store(store.to_url())
    # A fault-injecting wrapper names the store it wraps (one cache with and without faults).
    assert type(again) is type(getattr(store, "inner", store))
    assert again.to_url() == store.to_url()
    store.put("rt", b"same backend")
    assert again.get_range("rt") == b"same backend"


def test_errors_carry_an_errno(store: Store) -> None:
    with pytest.raises(StoreError) as caught:
        store.head("absent")
    assert caught.value.errno == 2  # ENOENT

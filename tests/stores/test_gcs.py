"""The gs:// driver beyond the conformance suite, on fake-gcs-server: generations as
etags, its multipart design (temporary objects composed), the reserved upload folder,
options and credentials, probe errors, and the SDK's exceptions translated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import google.auth.exceptions as gauth
import pytest
import requests
from google.api_core import exceptions as gapi
from storetools import all_keys, populate

from fusestore.stores import (
    AccessDenied,
    AlreadyExists,
    InvalidKey,
    InvalidStoreURL,
    NotFound,
    PosixAttrs,
    PreconditionFailed,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
    open_store,
)
from fusestore.stores.gcs import GCSStore
from fusestore.stores.gcs_errors import Translator
from fusestore.testing.gcsemulator import GCSEmulator
from fusestore.testing.serverprocess import free_port

KiB = 1024
RESERVED = ".fusestore-uploads"


@pytest.fixture
def bucket(gcs_emulator: GCSEmulator) -> str:
    name = f"gcs-{uuid.uuid4().hex[:16]}"
    gcs_emulator.create_bucket(name)
    return name


def _open(emulator: GCSEmulator, url: str, **options: object) -> GCSStore:
    store = open_store(url, **{**emulator.store_options(), **options})
    assert isinstance(store, GCSStore)
    return store


@pytest.fixture
def gs(gcs_emulator: GCSEmulator, bucket: str) -> Iterator[GCSStore]:
    store = _open(gcs_emulator, f"gs://{bucket}")
    yield store
    store.close()


def _raw_names(store: GCSStore) -> list[str]:
    """Every object name in the store's bucket, reserved ones included."""
    return sorted(blob.name for blob in store.client.list_blobs(store.bucket_name))


# -- generations as etags ---------------------------------------------------------------


def test_etags_are_generations_through_put_copy_and_compose(gs: GCSStore) -> None:
    put = gs.put("a", b"one")
    assert put.isdigit() and gs.head("a").etag == put
    assert gs.bucket.get_blob("a").generation == int(put)
    copied = gs.copy("a", "b")
    assert copied.isdigit() and gs.head("b").etag == copied != put
    upload = gs.start_multipart("c")
    parts = [gs.put_part("c", upload, n, b"x" * 10) for n in (1, 2)]
    assert all(part.etag.isdigit() for part in parts)
    composed = gs.complete_multipart("c", upload, parts)
    assert gs.head("c").etag == composed and composed.isdigit()
    assert [o.etag for o in gs.list("", "/").objects] == [put, copied, composed]


def test_create_only_and_replace_conditions(gs: GCSStore) -> None:
    first = gs.put("k", b"1", if_none_match=True)
    with pytest.raises(AlreadyExists):
        gs.put("k", b"2", if_none_match=True)
    second = gs.put("k", b"2", if_match=first)
    with pytest.raises(PreconditionFailed):
        gs.put("k", b"3", if_match=first)
    with pytest.raises(PreconditionFailed):
        gs.put("k", b"3", if_match="not-a-generation")
    assert gs.get_range("k") == b"2" and gs.head("k").etag == second
    gs.delete("k")
    with pytest.raises(NotFound):
        gs.put("k", b"4", if_match=second)
    with pytest.raises(NotFound):
        gs.put("k", b"4", if_match="not-a-generation")


def test_reads_of_a_generation(gs: GCSStore) -> None:
    old = gs.put("r", b"0123456789")
    assert gs.get_range("r", 2, 3, etag=old) == b"234"
    new = gs.put("r", b"abcdefghij")
    with pytest.raises(PreconditionFailed):
        gs.get_range("r", 2, 3, etag=old)
    assert gs.get_range("r", 2, 3, etag=new) == b"cde"
    gs.delete("r")
    with pytest.raises(NotFound):
        gs.get_range("r", etag=new)


def test_copy_conditions_name_the_source_generation(gs: GCSStore) -> None:
    gs.put("s", b"first", {"mode": "1"})
    seen = gs.head("s")
    gs.put("s", b"second", {"mode": "2"})
    with pytest.raises(PreconditionFailed):
        gs.copy("s", "d", expect=seen)
    with pytest.raises(NotFound):
        gs.head("d")
    assert gs.copy("s", "d", expect=gs.head("s")) == gs.head("d").etag
    assert gs.get_range("d") == b"second"
    gs.delete("s")
    with pytest.raises(NotFound):
        gs.copy("s", "e", expect=seen)


def test_copy_replacing_metadata_with_none_clears_it(gs: GCSStore) -> None:
    gs.put("s", b"x", {"mode": "33188", "uid": "1"})
    etag = gs.copy("s", "d", {})
    assert gs.head("d").metadata == {}
    assert gs.head("d").etag == etag
    assert gs.head("s").metadata == {"mode": "33188", "uid": "1"}


# -- multipart: parts composed ------------------------------------------------------------


def test_many_small_parts_sent_out_of_order_compose_in_order(gs: GCSStore) -> None:
    chunks = [os.urandom(KiB + n) for n in range(70)]  # three composes of parts, then one
    upload = gs.start_multipart("big/obj", {"mode": "33188"})
    numbers = list(range(1, len(chunks) + 1))[::-1]
    with ThreadPoolExecutor(8) as pool:
        parts = list(pool.map(lambda n: gs.put_part("big/obj", upload, n, chunks[n - 1]), numbers))
    etag = gs.complete_multipart("big/obj", upload, parts)
    assert gs.get_range("big/obj") == b"".join(chunks)
    info = gs.head("big/obj")
    assert (info.etag, info.metadata) == (etag, {"mode": "33188"})
    assert gs.request_counts()["objects.compose"] == 4
    assert gs.list_multipart() == []
    assert _raw_names(gs) == ["big/obj"], "the parts and intermediates are gone"


@pytest.mark.slow
def test_more_parts_than_two_levels_of_composes(gs: GCSStore) -> None:
    chunks = [n.to_bytes(2, "big") for n in range(1100)]  # 32 * 32 < 1100
    upload = gs.start_multipart("huge")
    with ThreadPoolExecutor(16) as pool:
        parts = list(pool.map(lambda n: gs.put_part("huge", upload, n, chunks[n - 1]), range(1, 1101)))
    gs.complete_multipart("huge", upload, parts)
    assert gs.get_range("huge") == b"".join(chunks)
    assert _raw_names(gs) == ["huge"]


def test_parts_of_an_upload_go_up_after_a_restart(gcs_emulator: GCSEmulator, gs: GCSStore) -> None:
    upload = gs.start_multipart("k", {"uid": "7"})
    first = gs.put_part("k", upload, 1, b"before ")
    again = _open(gcs_emulator, gs.to_url())  # a new process: knows nothing of the upload
    second = again.put_part("k", upload, 2, b"after")
    again.complete_multipart("k", upload, [first, second])
    assert gs.get_range("k") == b"before after"
    assert gs.head("k").metadata == {"uid": "7"}


def test_an_unknown_or_finished_upload_is_not_found(gs: GCSStore) -> None:
    with pytest.raises(NotFound):
        gs.put_part("k", uuid.uuid4().hex, 1, b"x")
    with pytest.raises(NotFound):
        gs.put_part("k", "../../escape", 1, b"x")
    upload = gs.start_multipart("k")
    with pytest.raises(NotFound):
        gs.put_part("other-key", upload, 1, b"x")
    part = gs.put_part("k", upload, 1, b"x")
    with pytest.raises(NotFound):
        gs.complete_multipart("other-key", upload, [part])
    gs.abort_multipart("k", upload)
    again = open_store(gs.to_url())
    with pytest.raises(NotFound):
        again.put_part("k", upload, 2, b"y")


def test_pending_uploads_are_listed_and_aborted(gs: GCSStore) -> None:
    a = gs.start_multipart("dir/a", {"mode": "1"})
    b = gs.start_multipart("other/b")
    gs.put_part("dir/a", a, 1, b"part")
    pending = gs.list_multipart()
    assert [(u.key, u.upload_id) for u in pending] == [("dir/a", a), ("other/b", b)]
    assert all(abs(u.initiated - time.time()) < 120 for u in pending)
    assert [u.key for u in gs.list_multipart("dir/")] == ["dir/a"]
    gs.abort_multipart("dir/a", a)
    assert [u.key for u in gs.list_multipart()] == ["other/b"]
    assert [n for n in _raw_names(gs) if a in n] == []
    gs.abort_multipart("dir/a", a)  # again: fine


# -- the reserved folder ----------------------------------------------------------------


@pytest.mark.parametrize(
    "key", [RESERVED, f"{RESERVED}/x", f"a/{RESERVED}", f"a/{RESERVED}/b", f"{RESERVED}/"]
)
def test_the_reserved_name_is_refused_as_a_key(gs: GCSStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        gs.put(key, b"x")
    with pytest.raises(InvalidKey):
        gs.head(key)
    with pytest.raises(InvalidKey):
        gs.start_multipart(key)


def test_uploads_are_invisible_in_listings(gcs_emulator: GCSEmulator, gs: GCSStore) -> None:
    populate(gs, ["top", "dir/f"])
    nested = _open(gcs_emulator, f"{gs.to_url().split('?')[0]}/dir")
    for store, key in ((gs, "x"), (nested, "y")):
        upload = store.start_multipart(key)
        store.put_part(key, upload, 1, b"part")
    assert any(RESERVED in name for name in _raw_names(gs))
    assert all_keys(gs) == ["dir/f", "top"]
    assert gs.list("", "/").prefixes == ["dir/"]
    assert gs.list("dir/", "/").prefixes == []
    assert all_keys(nested) == ["f"]
    assert [u.key for u in gs.list_multipart()] == ["x"]
    assert [u.key for u in nested.list_multipart()] == ["y"]


# -- metadata ---------------------------------------------------------------------------


def test_metadata_values_round_trip(gs: GCSStore) -> None:
    posix = PosixAttrs(mode=0o100640, uid=1000, gid=100, mtime_ns=1_700_000_000_250_000_000)
    meta = {**posix.to_metadata(), "odd-value": "a b=c%20d 'e' \"f\" ~!@#$^&*()", "x_y": ""}
    gs.put("m", b"x", meta)
    assert gs.head("m").metadata == meta
    (listed,) = gs.list("", "/").objects
    assert listed.metadata == meta
    assert PosixAttrs.from_metadata(gs.head("m").metadata or {}) == posix


# -- listings ---------------------------------------------------------------------------


def test_pages_give_each_prefix_once(gs: GCSStore) -> None:
    populate(gs, ["a", "b/x", "c", "d/x", "e", "f/x", "g"])
    objects, prefixes, token = [], [], None
    while True:
        page = gs.list("", "/", token, 1)
        objects += [o.key for o in page.objects]
        prefixes += page.prefixes
        if page.next_token is None:
            break
        token = page.next_token
    assert objects == ["a", "c", "e", "g"]
    assert prefixes == ["b/", "d/", "f/"]


# -- deletes ----------------------------------------------------------------------------


def test_deletes_fall_back_to_single_requests_where_batches_are_refused(gs: GCSStore) -> None:
    keys = [f"d/{i}" for i in range(30)]
    populate(gs, keys)
    gs.delete_many([*keys[:15], "absent"])
    gs.delete_many(keys[15:])
    assert all_keys(gs) == []
    counts = gs.request_counts()
    assert counts["batch"] == 1, "the emulator refused the first batch; no second one was tried"
    assert counts["objects.delete"] == 31


# -- options and credentials ------------------------------------------------------------


def test_options_round_trip_through_the_url(bucket: str, tmp_path: Path) -> None:
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps({"type": "service_account", "private_key": "SECRET-KEY-MATERIAL"}))
    url = (
        f"gs://{bucket}/team/a?project=p1&endpoint=http%3A%2F%2F127.0.0.1%3A1&credentials_file={key_file}"
        "&read_only=true&key_prefix=logs-&max_connections=4&connect_timeout=2.0&read_timeout=3.0"
        "&retry_timeout=4.0"
    )
    store = open_store(url)
    assert open_store(store.to_url()).to_url() == store.to_url()
    assert isinstance(store, GCSStore)
    assert store.config["credentials_file"] == str(key_file) and store.config["retry_timeout"] == 4.0
    assert store.keys.prefix == "team/a/" and store.keys.name_filter == "logs-"
    assert "SECRET" not in store.to_url() + repr(store)
    assert not store.writable


def test_bad_options_are_one_line_errors(bucket: str, tmp_path: Path) -> None:
    for url in (
        f"gs://{bucket}?credentials_file={tmp_path}/missing.json",
        f"gs://{bucket}?endpoint=ftp://x",
        f"gs://{bucket}?anonymous=true&credentials_file=/etc/hostname",
        "gs://UPPER",
        "gs://user:secret@bucket",
        "gs:///path",
    ):
        with pytest.raises(InvalidStoreURL) as caught:
            open_store(url)
        assert "\n" not in str(caught.value) and "secret" not in str(caught.value)


def test_a_credentials_file_that_is_no_key_is_access_denied(
    gcs_emulator: GCSEmulator, bucket: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps({"type": "service_account", "private_key": "SECRET-KEY-MATERIAL"}))
    store = _open(gcs_emulator, f"gs://{bucket}", credentials_file=str(key_file))
    with pytest.raises(AccessDenied) as caught:
        store.head("x")
    assert str(key_file) in str(caught.value) and "SECRET" not in str(caught.value)


def test_an_anonymous_store_reads_and_refuses_writes(gcs_emulator: GCSEmulator, gs: GCSStore) -> None:
    gs.put("public", b"data")
    anonymous = _open(gcs_emulator, gs.to_url(), anonymous=True)
    assert not anonymous.writable
    assert anonymous.get_range("public") == b"data"
    with pytest.raises(AccessDenied):
        anonymous.put("x", b"y")
    with pytest.raises(AccessDenied):
        anonymous.delete("public")


def test_the_emulator_variable_names_the_endpoint(
    gcs_emulator: GCSEmulator, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.endpoint_url.removeprefix("http://"))
    store = open_store(f"gs://{bucket}")
    assert "endpoint" not in store.to_url()
    store.put("via-env", b"x")
    assert store.get_range("via-env") == b"x"


def test_requests_are_counted_by_json_api_operation(gs: GCSStore) -> None:
    gs.put("a", b"x")
    gs.head("a")
    gs.get_range("a")
    gs.list()
    gs.copy("a", "b")
    assert gs.request_counts() == {
        "objects.insert": 1,
        "objects.get": 2,
        "objects.list": 1,
        "objects.rewrite": 1,
    }


# -- probe and errors -------------------------------------------------------------------


def test_probe_of_a_missing_bucket(gcs_emulator: GCSEmulator) -> None:
    store = _open(gcs_emulator, "gs://no-such-bucket")
    with pytest.raises(StoreNotFound) as caught:
        store.probe()
    assert "no-such-bucket" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.slow
def test_probe_of_a_dead_endpoint_fails_quickly(bucket: str) -> None:
    store = open_store(f"gs://{bucket}", endpoint=f"http://127.0.0.1:{free_port()}", connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        store.probe()
    assert time.monotonic() - started < 15
    assert bucket in str(caught.value) and "\n" not in str(caught.value)
    # The OS's reason, not the HTTP library's account of its retries.
    assert str(caught.value).endswith(": [Errno 111] Connection refused"), str(caught.value)


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (gapi.Forbidden("no"), AccessDenied),
        (gapi.Unauthorized("no"), AccessDenied),
        (gapi.NotFound("no"), NotFound),
        (gapi.TooManyRequests("slow down"), StoreUnavailable),
        (gapi.ServiceUnavailable("down"), StoreUnavailable),
        (gapi.InternalServerError("oops"), StoreUnavailable),
        (gapi.BadRequest("bad"), StoreError),
        (gauth.RefreshError("token refused"), AccessDenied),
        (gauth.DefaultCredentialsError("none found"), AccessDenied),
        (gauth.TransportError("no route"), StoreUnavailable),
        (requests.exceptions.ConnectionError("refused"), StoreUnavailable),
        (requests.exceptions.ReadTimeout("slow"), StoreUnavailable),
    ],
)
def test_sdk_exceptions_become_store_errors(raised: Exception, expected: type[StoreError]) -> None:
    with pytest.raises(expected) as caught, Translator("bkt", "https://x").errors("k"):
        raise raised
    assert type(caught.value) is expected or expected is StoreError
    assert "\n" not in str(caught.value)


def test_a_412_is_named_by_the_condition_it_failed() -> None:
    with pytest.raises(AlreadyExists), Translator("bkt", "https://x").errors("k", condition="none-match"):
        raise gapi.PreconditionFailed("412")
    with pytest.raises(PreconditionFailed), Translator("bkt", "https://x").errors("k", condition="match"):
        raise gapi.PreconditionFailed("412")
    with pytest.raises(StoreNotFound), Translator("bkt", "https://x").errors(None, bucket_404=True):
        raise gapi.NotFound("404")


@pytest.mark.slow
def test_mounting_a_missing_bucket_exits_2_with_one_line(gcs_emulator: GCSEmulator, tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    url = f"gs://missing-bucket?endpoint={gcs_emulator.endpoint_url}"
    result = subprocess.run(
        [sys.executable, "-m", "fusestore", "mount", url, str(mountpoint)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path / "run"), "XDG_CACHE_HOME": str(tmp_path)},
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing-bucket" in lines[0] and "does not exist" in lines[0], lines


def test_readinto_reads_the_socket_into_the_callers_buffer(gs: GCSStore) -> None:
    data = os.urandom(2 * 1024 * KiB)
    gs.put("big", data)
    buffer = memoryview(bytearray(300 * KiB))
    received = bytearray()
    with gs.open_range("big", 7, None) as reader:
        assert reader._direct is not None, "readinto bypasses urllib3's copies"
        while count := reader.readinto(buffer):
            received += buffer[:count]
    assert received == data[7:]


def test_completions_and_copies_send_their_conditions(gcs_emulator: GCSEmulator, gs: GCSStore) -> None:
    """The emulator skips these conditions (SERVER_LIMITS); GCS checks them: they are sent."""

    def composed(key: str, **condition: object) -> str:
        upload = gs.start_multipart(key)
        part = gs.put_part(key, upload, 1, b"new")
        offset = gcs_emulator.log_size()
        etag = gs.complete_multipart(key, upload, [part], **condition)  # type: ignore[arg-type]
        (compose,) = [line for line in gcs_emulator.log_since(offset).splitlines() if "/compose?" in line]
        return etag if "ifGenerationMatch=" + str(condition.get("if_match", "0")) in compose else ""

    etag = composed("k", if_none_match=True)
    assert etag, "create-only: ifGenerationMatch=0"
    assert composed("k", if_match=etag), "replace: ifGenerationMatch=GENERATION"
    seen = gs.head("k")
    offset = gcs_emulator.log_size()
    gs.copy("k", "copy", expect=seen)
    (rewrite,) = [line for line in gcs_emulator.log_since(offset).splitlines() if "/rewriteTo/" in line]
    assert f"sourceGeneration={seen.etag}" in rewrite and f"ifSourceGenerationMatch={seen.etag}" in rewrite

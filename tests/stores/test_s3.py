"""What only the S3 driver does: wire format, server-side copy in parts, client settings,
and the translation of S3's failures. Real HTTP against moto's server, except the error
translation table, which uses botocore's Stubber to produce answers moto never gives."""

from __future__ import annotations

import base64
import http.client
import os
import socketserver
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.parsers
import botocore.utils
import pytest
from botocore.stub import Stubber

from fusestore.stores import (
    AccessDenied,
    InvalidKey,
    InvalidStoreURL,
    KeyTooLong,
    NotFound,
    PosixAttrs,
    PreconditionFailed,
    QuotaExceeded,
    StoreError,
    StoreNotFound,
    StoreUnavailable,
    open_store,
)
from fusestore.stores.s3 import S3Store, parse_timestamp
from fusestore.testing.s3server import LocalS3Server, free_port

MiB = 1024 * 1024


@pytest.fixture
def s3(s3_server: LocalS3Server, make_bucket: Callable[[], str]) -> S3Store:
    store = open_store(f"s3://{make_bucket()}", endpoint_url=s3_server.endpoint_url)
    assert isinstance(store, S3Store)
    return store


def test_posix_attributes_travel_as_s3fs_headers(s3: S3Store, s3_server: LocalS3Server) -> None:
    attrs = PosixAttrs(mode=0o100755, uid=1000, gid=1000, mtime_ns=1_700_000_000_000_000_000)
    s3.put("script.sh", b"#!/bin/sh\n", attrs.to_metadata())
    raw = s3_server.client().head_object(Bucket=s3.bucket, Key="script.sh")
    headers = raw["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amz-meta-mode"] == str(0o100755)
    assert headers["x-amz-meta-uid"] == "1000"
    assert headers["x-amz-meta-gid"] == "1000"
    assert headers["x-amz-meta-mtime"] == "1700000000"


def test_objects_written_by_other_tools_are_read_natively(s3: S3Store, s3_server: LocalS3Server) -> None:
    s3_server.client().put_object(
        Bucket=s3.bucket, Key="dir/from-boto3.txt", Body=b"native", Metadata={"mode": "33188"}
    )
    assert s3.get_range("dir/from-boto3.txt") == b"native"
    assert PosixAttrs.from_metadata(s3.head("dir/from-boto3.txt").metadata).mode == 0o100644


def test_prefix_in_the_url_maps_keys_below_it(
    s3_server: LocalS3Server, make_bucket: Callable[[], str]
) -> None:
    bucket = make_bucket()
    store = open_store(f"s3://{bucket}/team/a/", endpoint_url=s3_server.endpoint_url)
    store.put("x/y.txt", b"1")
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["team/a/x/y.txt"]
    assert store.to_url().startswith(f"s3://{bucket}/team/a?")


def test_large_copy_uses_upload_part_copy(s3: S3Store) -> None:
    data = os.urandom(12 * MiB + 3)
    s3.put("big", data, {"mode": "33188"})
    s3.copy_threshold = 1 * MiB  # exercise the > 5 GiB path with a small object
    s3.copy_min_part_size = 5 * MiB
    calls: list[str] = []
    s3.client.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    etag = s3.copy("big", "big-copy")
    assert calls.count("UploadPartCopy") == 3 and "CopyObject" not in calls
    assert s3.get_range("big-copy") == data
    assert s3.head("big-copy").etag == etag
    assert s3.head("big-copy").metadata == {"mode": "33188"}
    assert s3.list_multipart() == []


@pytest.mark.parametrize("checksums", [True, False])
def test_uploaded_parts_carry_their_crc32_for_the_server_to_check(
    s3_server: LocalS3Server, make_bucket: Callable[[], str], checksums: bool
) -> None:
    bucket = make_bucket()
    store = open_store(f"s3://{bucket}", endpoint_url=s3_server.endpoint_url, checksums=checksums)
    assert isinstance(store, S3Store)
    sent: dict[str, list[dict[str, Any]]] = {"UploadPart": [], "CompleteMultipartUpload": []}
    for name, params in sent.items():
        store.client.meta.events.register(
            f"provide-client-params.s3.{name}", lambda params, _to=params, **_: _to.append(dict(params))
        )
    chunks = [os.urandom(5 * MiB), b"tail"]
    with tempfile.TemporaryFile() as source:
        source.write(b"".join(chunks))
        store.put_file("parts", source, 5 * MiB + 4, part_size=5 * MiB, multipart_threshold=5 * MiB)
    assert store.get_range("parts") == b"".join(chunks)
    sums = [base64.b64encode(zlib.crc32(chunk).to_bytes(4, "big")).decode() for chunk in chunks]
    named = sent["CompleteMultipartUpload"][0]["MultipartUpload"]["Parts"]
    head = s3_server.client().head_object(Bucket=bucket, Key="parts", ChecksumMode="ENABLED")
    if checksums:
        assert sorted(p["ChecksumCRC32"] for p in sent["UploadPart"]) == sorted(sums)
        assert [p.get("ChecksumCRC32") for p in named] == sums
        # The object's checksum is the CRC32 of its parts' (S3's "composite" checksum).
        composite = zlib.crc32(b"".join(base64.b64decode(value) for value in sums))
        assert base64.b64decode(head["ChecksumCRC32"].split("-")[0]) == composite.to_bytes(4, "big")
    else:
        assert all("ChecksumCRC32" not in p for p in sent["UploadPart"] + named)
        assert "ChecksumCRC32" not in head


def test_an_object_uploaded_in_parts_reads_back_checked_after_a_copy(
    s3: S3Store, s3_server: LocalS3Server
) -> None:
    data = os.urandom(5 * MiB + 7)
    with tempfile.TemporaryFile() as source:
        source.write(data)
        s3.put_file("parts", source, len(data), part_size=5 * MiB, multipart_threshold=5 * MiB)
    s3.copy("parts", "copied")
    s3.copy("copied", "copied", {"mode": "33188"})  # new metadata: a copy onto itself
    checking = s3_server.client()  # boto3's defaults: it checks the checksums it is sent
    for key in ("parts", "copied"):
        body = checking.get_object(Bucket=s3.bucket, Key=key, ChecksumMode="ENABLED")["Body"]
        assert body.read() == data, key


def test_batch_delete_sends_at_most_1000_keys_per_request(s3: S3Store) -> None:
    s3.put("kept", b"k")
    batches: list[int] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        batches.append(len(params["Delete"]["Objects"]))

    s3.client.meta.events.register("provide-client-params.s3.DeleteObjects", count)
    s3.delete_many([f"absent/{i}" for i in range(2001)])
    assert batches == [1000, 1000, 1]
    assert s3.get_range("kept") == b"k"


def test_credentials_come_from_a_named_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3: S3Store, s3_server: LocalS3Server
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text("[team]\naws_access_key_id = from-profile\naws_secret_access_key = secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = open_store(f"s3://{s3.bucket}", endpoint_url=s3_server.endpoint_url, profile="team")
    store.probe()
    assert store.client._request_signer._credentials.access_key == "from-profile"  # type: ignore[attr-defined]


def test_part_sizes_grow_so_5_tib_fits_in_10000_parts() -> None:
    store = S3Store("bucket")
    assert store.part_size_for(1) == 5 * MiB
    assert store.part_size_for(50 * 1024 * MiB) == 6 * MiB
    five_tib = 5 * 1024 * 1024 * MiB
    part = store.part_size_for(five_tib)
    assert part <= store.max_part_size and -(-five_tib // part) <= 10_000
    sizes = [store.part_size_for(n * 1024 * MiB) for n in (1, 10, 100, 1000, 5000)]
    assert sizes == sorted(sizes)
    with pytest.raises(QuotaExceeded):
        store.part_size_for(five_tib + 1)


def test_opening_touches_no_network() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    store = open_store("s3://some-bucket/p", endpoint_url=dead, region="eu-west-1", profile="nonexistent")
    assert isinstance(store, S3Store) and store._client is None
    assert time.monotonic() - started < 1.0


def test_client_settings_follow_the_options(s3_server: LocalS3Server) -> None:
    store = open_store(
        f"s3://bkt?endpoint_url={s3_server.endpoint_url}&max_connections=7&retry_mode=adaptive&max_attempts=3",
        region="eu-central-1",
    )
    config = store.client.meta.config  # type: ignore[attr-defined]
    assert config.max_pool_connections == 7
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 3}
    assert config.s3["addressing_style"] == "path"
    assert store.client.meta.region_name == "eu-central-1"  # type: ignore[attr-defined]
    assert open_store(store.to_url()).to_url() == store.to_url()


def test_unreachable_endpoint_is_unavailable_and_quick() -> None:
    store = open_store(
        "s3://bkt", endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1, connect_timeout=2
    )
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cannot reach"):
        store.probe()
    assert time.monotonic() - started < 10


class _CutShortHandler(socketserver.StreamRequestHandler):
    """Answers any request with a 200 that promises 1000 bytes, sends 100 and hangs up."""

    def handle(self) -> None:
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        self.wfile.write(b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nETag: "e"\r\n\r\n' + b"x" * 100)


def test_a_download_cut_short_is_unavailable_not_short(s3: S3Store) -> None:
    """A GET whose connection breaks mid-body must not pass for a shorter object, whichever
    way it is read: the fetcher reopens on StoreUnavailable and trusts a short read."""
    with socketserver.TCPServer(("127.0.0.1", 0), _CutShortHandler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            store = open_store(
                "s3://bkt", endpoint_url=f"http://127.0.0.1:{server.server_address[1]}", max_attempts=1
            )
            with store.open_range("k") as reader:
                buffer = memoryview(bytearray(1000))
                assert reader.readinto(buffer) == 100
                with pytest.raises(StoreUnavailable, match="the download broke 900 bytes short"):
                    reader.readinto(buffer[100:])
            with store.open_range("k") as reader, pytest.raises(StoreUnavailable):
                reader.read()
        finally:
            server.shutdown()


def test_reading_in_place_bypasses_boto3s_copies(s3: S3Store) -> None:
    s3.put("big", b"y" * MiB)
    with s3.open_range("big") as reader:
        reader.readinto(memoryview(bytearray(10)))
        assert isinstance(reader._direct._direct, http.client.HTTPResponse)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-30T14:41:35.000Z",
        "2026-11-30T14:41:35Z",
        "2026-11-30T14:41:35.123456+02:00",
        "Mon, 30 Nov 2026 14:41:35 GMT",
        "1700000000",
        "2026-11-30T14:41:35",  # no zone: whatever botocore makes of it
    ],
)
def test_timestamps_parse_as_botocore_parses_them(text: str) -> None:
    ours, theirs = parse_timestamp(text), botocore.utils.parse_timestamp(text)
    assert ours == theirs
    assert ours.utcoffset() == theirs.utcoffset()


def test_listings_use_the_fast_timestamp_parser(s3: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.put("k", b"x")
    slow: list[str] = []

    def dateutil_parse(value: str) -> Any:
        slow.append(value)
        return parse_timestamp(value)

    monkeypatch.setattr(botocore.utils, "parse_timestamp", dateutil_parse)
    monkeypatch.setattr(botocore.parsers, "DEFAULT_TIMESTAMP_PARSER", dateutil_parse)
    fresh = open_store(s3.to_url())  # its client is made now, with the patches in place
    (info,) = fresh.list("").objects
    assert abs(info.mtime - time.time()) < 300
    assert not slow, "a listing's timestamps went to dateutil"


def test_missing_bucket_is_named(s3_server: LocalS3Server) -> None:
    store = open_store("s3://no-such-bucket", endpoint_url=s3_server.endpoint_url)
    with pytest.raises(StoreNotFound, match="bucket 'no-such-bucket' does not exist"):
        store.probe()


def test_wrong_credentials_are_access_denied(denied_s3_server: LocalS3Server) -> None:
    store = open_store("s3://denied", endpoint_url=denied_s3_server.endpoint_url)
    with pytest.raises(AccessDenied, match="InvalidAccessKeyId"):
        store.probe()
    with pytest.raises(AccessDenied):
        store.get_range("anything")


def test_missing_credentials_say_how_to_give_them(
    monkeypatch: pytest.MonkeyPatch, s3_server: LocalS3Server
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = open_store("s3://bkt", endpoint_url=s3_server.endpoint_url)
    with pytest.raises(AccessDenied, match="AWS_ACCESS_KEY_ID"):
        store.probe()


def test_unknown_profile_is_access_denied_at_first_use() -> None:
    store = open_store("s3://bkt", profile="no-such-profile", endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(AccessDenied, match="no-such-profile"):
        store.head("x")


def test_read_only_store_refuses_writes(s3: S3Store) -> None:
    ro = open_store(s3.to_url(), read_only=True)
    with pytest.raises(AccessDenied, match="read-only"):
        ro.put("x", b"1")
    with pytest.raises(NotFound):
        ro.head("x")


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, NotFound),
        ("NoSuchUpload", 404, NotFound),
        ("AccessDenied", 403, AccessDenied),
        ("SignatureDoesNotMatch", 403, AccessDenied),
        ("ExpiredToken", 400, AccessDenied),
        ("SlowDown", 503, StoreUnavailable),
        ("InternalError", 500, StoreUnavailable),
        ("RequestTimeout", 400, StoreUnavailable),
        ("KeyTooLongError", 400, KeyTooLong),
        ("EntityTooLarge", 400, QuotaExceeded),
        ("NoSuchBucket", 404, StoreNotFound),
        ("ConditionalRequestConflict", 409, PreconditionFailed),
        ("SomethingNew", 400, StoreError),
    ],
)
def test_s3_error_codes_map_to_store_errors(code: str, status: int, expected: type[StoreError]) -> None:
    store = S3Store("bkt", endpoint_url="http://127.0.0.1:9", max_attempts=1)
    with Stubber(store.client) as stub:
        stub.add_client_error("head_object", service_error_code=code, http_status_code=status)
        with pytest.raises(expected) as caught:
            store.head("k")
    assert type(caught.value) is expected
    assert StoreUnavailable.retryable and not NotFound.retryable


@pytest.mark.parametrize(
    "url",
    ["s3://", "s3://x", "s3://user:secret@bucket/p", "s3://bad_bucket!/p", "s3://bkt?retry_mode=sometimes"],
)
def test_bad_s3_urls_are_refused_with_a_reason(url: str) -> None:
    with pytest.raises(InvalidStoreURL) as caught:
        open_store(url)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("how", ["put", "create", "multipart", "copy"])
def test_a_key_the_server_cannot_address_is_invalid_not_missing(s3: S3Store, how: str) -> None:
    """moto answers a write to a key holding a newline with a bare 404 (no S3 error code:
    no route matches). That is no missing object: the key is one this server cannot hold,
    a permanent error (retried, it stayed pending until the unmount timeout)."""
    key = "line\nbreak.txt"
    with pytest.raises(InvalidKey) as refused:
        if how == "put":
            s3.put(key, b"data")
        elif how == "create":
            s3.put(key, b"data", if_none_match=True)
        elif how == "multipart":
            s3.start_multipart(key)
        else:
            s3.put("plain.txt", b"data")
            s3.copy("plain.txt", key)
    assert refused.value.key == key
    assert "\n" not in str(refused.value)
    assert s3.list().objects == [] if how != "copy" else [o.key for o in s3.list().objects] == ["plain.txt"]
    with pytest.raises(NotFound):
        s3.head("missing.txt")  # a HEAD's bare 404 still means a missing object


def test_a_bare_404_on_a_write_is_a_refused_key_only_where_the_bucket_exists() -> None:
    """A proxy (or a server that lost the bucket) answering 404 to every write must not
    park every file as a refused key: one HEAD-bucket, asked once per session, tells."""
    store = S3Store("bkt", endpoint_url="http://127.0.0.1:9", max_attempts=1)
    with Stubber(store.client) as stub:
        stub.add_client_error("put_object", service_error_code="404", http_status_code=404)
        stub.add_client_error("head_bucket", service_error_code="404", http_status_code=404)
        with pytest.raises(StoreNotFound, match="bkt"):
            store.put("a.txt", b"1")
        stub.assert_no_pending_responses()

        stub.add_client_error("put_object", service_error_code="404", http_status_code=404)
        stub.add_response("head_bucket", {}, {"Bucket": "bkt"})
        with pytest.raises(InvalidKey) as refused:
            store.put("b.txt", b"1")
        assert refused.value.key == "b.txt"
        stub.assert_no_pending_responses()

        # The bucket's existence is known now: no HEAD-bucket again (the Stubber would
        # fail on a request it was not given an answer for).
        stub.add_client_error("create_multipart_upload", service_error_code="404", http_status_code=404)
        with pytest.raises(InvalidKey):
            store.start_multipart("c.txt")
        stub.assert_no_pending_responses()

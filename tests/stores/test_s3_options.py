"""The s3:// options that shape requests: server-side encryption (SSE-S3, SSE-KMS, SSE-C),
storage class, canned ACL, requester pays, anonymous access, TLS settings, part size and
transfer rates. Real HTTP: moto's server records SSE, KMS key ids and storage classes but
ignores customer keys, so SSE-C is proven on SeaweedFS, which enforces them."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import logging
import os
import ssl
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from fusestore.stores import AccessDenied, InvalidStoreURL, StoreError, StoreUnavailable, open_store
from fusestore.stores.faulty import FaultyStore
from fusestore.stores.ratelimit import TokenBucket
from fusestore.stores.s3 import S3Store
from fusestore.testing.s3server import LocalS3Server, LocalSeaweedServer
from fusestore.writeback.staging import PART_SIZE, upload_part_size

MiB = 1024 * 1024


def s3_store(server: Any, bucket: str, **options: Any) -> S3Store:
    store = open_store(f"s3://{bucket}", endpoint_url=server.endpoint_url, **options)
    assert isinstance(store, S3Store)
    return store


def multipart(store: S3Store, key: str, data: bytes) -> None:
    with tempfile.TemporaryFile() as source:
        source.write(data)
        store.put_file(key, source, len(data), part_size=5 * MiB, multipart_threshold=5 * MiB)


def sent_headers(store: S3Store) -> list[tuple[str, dict[str, str]]]:
    """(operation, headers) of every request the store sends from now on."""
    seen: list[tuple[str, dict[str, str]]] = []

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    def record(request: Any, event_name: str, **_: Any) -> None:
        seen.append((event_name.rsplit(".", 1)[-1], {k.lower(): text(v) for k, v in request.headers.items()}))

    store.client.meta.events.register("before-send.s3", record)
    return seen


@pytest.fixture
def key_file(tmp_path: Path) -> tuple[Path, bytes]:
    key = os.urandom(32)
    path = tmp_path / "customer.key"
    path.write_bytes(key)
    path.chmod(0o600)
    return path, key


# -- the headers arrive ---------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"sse": "AES256"}, {"ServerSideEncryption": "AES256"}),
        (
            {"sse": "aws:kms", "sse_kms_key_id": "alias/fusestore-test"},
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/fusestore-test"},
        ),
        ({"storage_class": "STANDARD_IA"}, {"StorageClass": "STANDARD_IA"}),
    ],
)
def test_encryption_and_storage_class_reach_every_written_object(
    s3_server: LocalS3Server,
    make_bucket: Callable[[], str],
    options: dict[str, str],
    expected: dict[str, str],
) -> None:
    bucket = make_bucket()
    store = s3_store(s3_server, bucket, **options)
    store.put("small", b"one request")
    multipart(store, "parts", os.urandom(5 * MiB + 7))
    store.copy("small", "copied")
    store.copy("small", "copied-new-meta", {"mode": "33188"})
    store.copy_threshold = 1 * MiB  # the UploadPartCopy path, with a small object
    store.copy_min_part_size = 5 * MiB
    store.copy("parts", "copied-in-parts")
    client = s3_server.client()
    for key in ("small", "parts", "copied", "copied-new-meta", "copied-in-parts"):
        head = client.head_object(Bucket=bucket, Key=key)
        assert {name: head.get(name) for name in expected} == expected, key


@pytest.mark.timeout(60)
def test_a_canned_acl_goes_with_every_write(s3_server: LocalS3Server, make_bucket: Callable[[], str]) -> None:
    bucket = make_bucket()
    store = s3_store(s3_server, bucket, acl="public-read")
    store.put("small", b"x")
    multipart(store, "parts", os.urandom(5 * MiB + 1))
    store.copy("small", "copied")
    client = s3_server.client()
    for key in ("small", "parts", "copied"):
        grants = client.get_object_acl(Bucket=bucket, Key=key)["Grants"]
        uris = {g["Grantee"].get("URI", "") for g in grants if g["Permission"] == "READ"}
        assert "http://acs.amazonaws.com/groups/global/AllUsers" in uris, key


@pytest.mark.timeout(60)
def test_requester_pays_goes_with_every_request(
    s3_server: LocalS3Server, make_bucket: Callable[[], str]
) -> None:
    store = s3_store(s3_server, make_bucket(), requester_pays=True)
    seen = sent_headers(store)
    store.put("a", b"x")
    store.head("a")
    store.get_range("a")
    store.list("")
    multipart(store, "parts", os.urandom(5 * MiB + 1))
    upload = store.start_multipart("pending")
    store.list_multipart()
    store.abort_multipart("pending", upload)
    store.copy("a", "b")
    store.delete_many(["a", "b"])
    operations = {operation for operation, _ in seen}
    assert {"PutObject", "HeadObject", "GetObject", "ListObjectsV2", "CreateMultipartUpload"} <= operations
    assert {"UploadPart", "CompleteMultipartUpload", "ListMultipartUploads", "CopyObject"} <= operations
    assert {"AbortMultipartUpload", "DeleteObjects"} <= operations
    assert [op for op, headers in seen if headers.get("x-amz-request-payer") != "requester"] == []
    plain = s3_store(s3_server, store.bucket)
    seen = sent_headers(plain)
    plain.list("")
    assert "x-amz-request-payer" not in seen[0][1]


@pytest.mark.timeout(120)
def test_sse_c_objects_need_the_key_and_the_store_sends_it_everywhere(
    seaweed_server: LocalSeaweedServer, key_file: tuple[Path, bytes]
) -> None:
    path, key = key_file
    bucket = f"ssec-{os.urandom(6).hex()}"
    seaweed_server.create_bucket(bucket)
    store = s3_store(seaweed_server, bucket, sse_c_key_file=str(path))
    big = os.urandom(5 * MiB + 3)
    store.put("small", b"secret", {"mode": "33188"})
    multipart(store, "parts", big)
    assert store.head("small").metadata == {"mode": "33188"}
    assert store.get_range("small") == b"secret"
    assert store.get_range("parts", 5 * MiB, 3) == big[-3:]
    store.copy("small", "copied")
    store.copy("parts", "copied-parts")
    assert store.get_range("copied") == b"secret"
    assert store.get_range("copied-parts") == big
    client = seaweed_server.client()
    for name, data in (("small", b"secret"), ("parts", big), ("copied", b"secret"), ("copied-parts", big)):
        with pytest.raises(Exception, match=r"customer|Bad Request|InvalidArgument|400"):
            client.get_object(Bucket=bucket, Key=name)["Body"].read()
        got = client.get_object(Bucket=bucket, Key=name, SSECustomerAlgorithm="AES256", SSECustomerKey=key)
        assert got["Body"].read() == data, name
    # Without the key the store cannot read them either: the key is what protects them.
    keyless = s3_store(seaweed_server, bucket)
    with pytest.raises(StoreError):
        keyless.get_range("small")


@pytest.mark.timeout(60)
def test_copies_in_parts_carry_both_customer_keys(
    s3_server: LocalS3Server, make_bucket: Callable[[], str], key_file: tuple[Path, bytes]
) -> None:
    # SeaweedFS answers NotImplemented to UploadPartCopy from an SSE-C source, and moto
    # ignores customer keys: what is sent is checked here, on the wire.
    path, key = key_file
    store = s3_store(s3_server, make_bucket(), sse_c_key_file=str(path))
    multipart(store, "parts", os.urandom(5 * MiB + 3))
    store.copy_threshold = 1 * MiB
    store.copy_min_part_size = 5 * MiB
    seen = sent_headers(store)
    store.copy("parts", "copied-in-parts")
    store.copy_threshold = 5 * 1024 * MiB
    store.copy("parts", "copied")
    encoded = base64.b64encode(key).decode()
    md5 = base64.b64encode(hashlib.md5(key).digest()).decode()
    wanted = {"CreateMultipartUpload": 1, "UploadPartCopy": 2, "CompleteMultipartUpload": 1, "CopyObject": 1}
    assert {op for op, _ in seen} == {*wanted, "HeadObject"}
    assert {op: sum(1 for o, _ in seen if o == op) for op in wanted} == wanted
    for operation, headers in seen:
        prefixes = ["x-amz-server-side-encryption-customer-"]
        if operation in ("UploadPartCopy", "CopyObject"):
            prefixes.append("x-amz-copy-source-server-side-encryption-customer-")
        for prefix in prefixes:
            assert headers[prefix + "algorithm"] == "AES256", operation
            assert headers[prefix + "key"] == encoded, operation
            assert headers[prefix + "key-md5"] == md5, operation


def test_a_key_file_may_hold_the_key_in_base64(tmp_path: Path, key_file: tuple[Path, bytes]) -> None:
    _, key = key_file
    path = tmp_path / "b64.key"
    path.write_text(base64.b64encode(key).decode() + "\n")
    raw = open_store("s3://bucket", sse_c_key_file=str(key_file[0]))
    text = open_store("s3://bucket", sse_c_key_file=str(path))
    assert isinstance(raw, S3Store) and isinstance(text, S3Store)
    assert raw.requests.customer_key == text.requests.customer_key == key


# -- bad values: one line each, never the key -----------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sse": "foo"}, "sse must be one of AES256, aws:kms, not 'foo'"),
        ({"sse_kms_key_id": "k"}, "sse_kms_key_id needs sse=aws:kms"),
        ({"sse": "AES256", "sse_kms_key_id": "k"}, "sse_kms_key_id needs sse=aws:kms"),
        ({"storage_class": "standard-ia"}, "storage_class must be"),
        ({"acl": "everyone"}, "acl must be one of private, public-read,"),
        ({"part_size": "1M"}, "part_size must be between 5 MiB and 5 GiB"),
        ({"part_size": "6G"}, "part_size must be between 5 MiB and 5 GiB"),
        ({"part_size": "lots"}, "part_size='lots' is not a valid size"),
        ({"max_upload_rate": "-1"}, "max_upload_rate='-1' is not a valid size"),
        ({"max_download_rate": "0"}, "max_download_rate must be at least 1 byte per second"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, "ca_bundle /nonexistent/ca.pem cannot be read"),
        ({"verify_tls": "false", "ca_bundle": "/etc/hostname"}, "verify_tls=false and ca_bundle"),
        ({"anonymous_writes": "true"}, "anonymous_writes needs anonymous=true"),
    ],
)
def test_bad_values_are_one_line_naming_the_problem(options: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidStoreURL) as failure:
        open_store("s3://bucket", **options)
    assert message in str(failure.value)
    assert "\n" not in str(failure.value)


def test_a_bad_key_file_is_named_and_its_content_is_not(tmp_path: Path, key_file: tuple[Path, bytes]) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"0123456789abcdef0123456789")  # 26 bytes: neither raw nor base64 of 32
    missing = tmp_path / "missing.key"
    cases = [(short, "does not hold a 256-bit key"), (missing, "cannot be read")]
    for path, problem in cases:
        with pytest.raises(InvalidStoreURL) as failure:
            open_store("s3://bucket", sse_c_key_file=str(path))
        text = str(failure.value)
        assert f"sse_c_key_file {path}" in text and problem in text and "\n" not in text
        assert "0123456789" not in text
    with pytest.raises(InvalidStoreURL, match="sse and sse_c_key_file exclude each other"):
        open_store("s3://bucket", sse="AES256", sse_c_key_file=str(key_file[0]))


def test_the_options_round_trip_through_the_url_and_keep_the_key_out(key_file: tuple[Path, bytes]) -> None:
    path, key = key_file
    options = {
        "sse_c_key_file": str(path),
        "storage_class": "GLACIER_IR",
        "requester_pays": True,
        "acl": "bucket-owner-full-control",
        "part_size": 64 * MiB,
        "max_upload_rate": 10 * MiB,
        "max_download_rate": "20M",
    }
    store = open_store("s3://bucket/p", **options)
    again = open_store(store.to_url())
    assert isinstance(store, S3Store) and isinstance(again, S3Store)
    assert again.config == store.config
    assert again.config["max_download_rate"] == 20 * MiB
    for text in (store.to_url(), repr(store), repr(store.requests)):
        assert key.hex() not in text and base64.b64encode(key).decode() not in text
        assert repr(key)[2:-1] not in text
    kms = open_store(open_store("s3://bucket?sse=aws:kms&sse_kms_key_id=arn:aws:kms:k").to_url())
    assert isinstance(kms, S3Store) and kms.config["sse"] == "aws:kms"


# -- anonymous access -------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_anonymous_reads_a_public_bucket_without_credentials_and_is_read_only(
    s3_server: LocalS3Server, make_bucket: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = make_bucket()
    s3_server.client().put_bucket_acl(Bucket=bucket, ACL="public-read")
    s3_server.client().put_object(Bucket=bucket, Key="open.txt", Body=b"for all", ACL="public-read")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    signed = s3_store(s3_server, bucket)
    with pytest.raises(AccessDenied, match="no usable AWS credentials"):
        signed.get_range("open.txt")
    store = s3_store(s3_server, bucket, anonymous=True)
    seen = sent_headers(store)
    assert store.get_range("open.txt") == b"for all"
    assert [o.key for o in store.list("").objects] == ["open.txt"]
    assert seen and all("authorization" not in headers for _, headers in seen)
    assert not store.writable
    with pytest.raises(AccessDenied, match="anonymous"):
        store.put("mine.txt", b"no")
    writer = s3_store(s3_server, bucket, anonymous=True, anonymous_writes=True)
    assert writer.writable
    writer.put("mine.txt", b"unsigned")  # moto, like a bucket that grants public writes, takes it
    assert store.get_range("mine.txt") == b"unsigned"


# -- TLS ---------------------------------------------------------------------------------------


def test_file_options_are_made_absolute(
    key_file: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(key_file[0].parent)
    store = open_store("s3://bucket", sse_c_key_file=key_file[0].name, ca_bundle="/etc/../etc/hostname")
    assert isinstance(store, S3Store)
    assert store.config["sse_c_key_file"] == str(key_file[0])
    assert store.config["ca_bundle"] == "/etc/hostname"
    monkeypatch.chdir("/")
    assert open_store(store.to_url()).config == store.config  # type: ignore[attr-defined]


def test_tls_settings_reach_the_client(caplog: pytest.LogCaptureFixture) -> None:
    bundle = open_store("s3://bucket", endpoint_url="https://127.0.0.1:1", ca_bundle="/etc/hostname")
    assert isinstance(bundle, S3Store)
    assert bundle.client._endpoint.http_session._verify == "/etc/hostname"
    unverified = open_store("s3://bucket", endpoint_url="https://127.0.0.1:1", verify_tls=False)
    assert isinstance(unverified, S3Store)
    with caplog.at_level(logging.WARNING, logger="fusestore"):
        client = unverified.client
    assert client._endpoint.http_session._verify is False
    assert any("not verified" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


class TLSMotoServer(LocalS3Server):
    """moto's server behind TLS, with the certificate given."""

    def __init__(self, cert: Path, key: Path) -> None:
        super().__init__()
        self.cert, self.key = cert, key

    @property
    def endpoint_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        return [*super()._command(), "--ssl", "--ssl-cert", str(self.cert), "--ssl-key", str(self.key)]

    def _answers(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.cert))
        try:
            with urllib.request.urlopen(
                f"{self.endpoint_url}/moto-api/data.json", timeout=1, context=context
            ):
                return True
        except OSError:
            return False


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (its own CA), and that key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fusestore test server")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.mark.timeout(120)
def test_a_tls_server_is_trusted_through_its_ca_bundle_or_not_verified(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = self_signed(tmp_path)
    with TLSMotoServer(cert, key) as server:
        boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
            verify=str(cert),
        ).create_bucket(Bucket="tls-bucket")
        url = "s3://tls-bucket"
        strict = open_store(url, endpoint_url=server.endpoint_url, max_attempts=1)
        with pytest.raises(
            StoreUnavailable, match=r"certificate verify failed.*needs the store option ca_bundle"
        ):
            strict.list("")
        trusting = open_store(url, endpoint_url=server.endpoint_url, ca_bundle=str(cert))
        trusting.put("a.txt", b"over TLS")
        assert trusting.get_range("a.txt") == b"over TLS"
        unverified = open_store(url, endpoint_url=server.endpoint_url, verify_tls=False)
        with caplog.at_level(logging.WARNING, logger="fusestore"), warnings.catch_warnings():
            warnings.simplefilter("error")  # urllib3's warning per request is silenced
            assert unverified.get_range("a.txt") == b"over TLS"
            assert unverified.get_range("a.txt") == b"over TLS"
        said = [r.getMessage() for r in caplog.records if "not verified" in r.getMessage()]
        assert len(said) == 1 and server.endpoint_url in said[0]


# -- part size and transfer rates --------------------------------------------------------------


@pytest.mark.timeout(60)
def test_part_size_is_used_and_grown_to_fit_ten_thousand_parts(
    s3_server: LocalS3Server, make_bucket: Callable[[], str]
) -> None:
    store = s3_store(s3_server, make_bucket(), part_size="6M")
    assert store.part_size_for(1) == 6 * MiB
    assert store.part_size_for(10_000 * 6 * MiB) == 6 * MiB
    assert store.part_size_for(10_000 * 6 * MiB + 1) == 7 * MiB
    seen = sent_headers(store)
    data = os.urandom(13 * MiB)
    with tempfile.TemporaryFile() as source:
        source.write(data)
        store.put_file("big", source, len(data), multipart_threshold=5 * MiB)
    assert sorted(int(h["content-length"]) for op, h in seen if op == "UploadPart") == [MiB, 6 * MiB, 6 * MiB]
    assert store.get_range("big") == data
    # The mount's staged uploads take it too, instead of their own 8 MiB.
    assert upload_part_size(store, 100 * MiB) == 6 * MiB
    assert upload_part_size(FaultyStore(store, ""), 100 * MiB) == 6 * MiB
    assert upload_part_size(s3_store(s3_server, store.bucket), 100 * MiB) == PART_SIZE == 8 * MiB


def test_a_token_bucket_holds_its_rate_across_threads() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    bucket = TokenBucket(1000, clock=lambda: clock[0], sleep=sleep)
    bucket.take(250)  # within the burst (a quarter second's worth): no wait
    assert slept == []
    bucket.take(1000)
    assert slept == [pytest.approx(1.0)]
    clock[0] += 10  # idle time saves up no more than the burst
    bucket.take(500)
    assert slept[-1] == pytest.approx(0.25)


@pytest.mark.timeout(60)
def test_transfer_rates_are_held(s3_server: LocalS3Server, make_bucket: Callable[[], str]) -> None:
    bucket = make_bucket()
    data = os.urandom(MiB)
    limited = s3_store(s3_server, bucket, max_upload_rate="512K", max_download_rate="512K")
    started = time.monotonic()
    limited.put("one", data)
    upload = time.monotonic() - started
    started = time.monotonic()
    with limited.open_range("one") as reader:
        buffer = bytearray(MiB)
        view, got = memoryview(buffer), 0
        while count := reader.readinto(view[got:]):
            got += count
    download = time.monotonic() - started
    assert bytes(buffer) == data
    # 1 MiB at 512 KiB/s with a quarter second's burst: at least 1.75 s each way.
    assert 1.6 < upload < 6 and 1.6 < download < 6, (upload, download)
    free = s3_store(s3_server, bucket)
    started = time.monotonic()
    free.put("two", data)
    assert free.get_range("two") == data
    assert time.monotonic() - started < 1.5

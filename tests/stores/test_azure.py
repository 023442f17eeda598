"""The az:// driver beyond the conformance suite, on Azurite: the metadata-name mapping,
the credential chain, secrets kept out of URLs and messages, uploads in blocks, copies,
batch deletes, probe errors and the command line's refusal to mount a broken store."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from storetools import all_keys, populate

pytest.importorskip("azure.storage.blob", reason="the Azure SDK is not installed")

from azure.core.exceptions import ClientAuthenticationError
from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

from fusestore.stores import (
    AccessDenied,
    AlreadyExists,
    InvalidStoreURL,
    NotFound,
    PreconditionFailed,
    StoreNotFound,
    StoreUnavailable,
    open_store,
)
from fusestore.stores.azure import AzureStore
from fusestore.stores.azure_auth import resolve
from fusestore.stores.azure_errors import ErrorMap
from fusestore.stores.azure_names import decode_name, encode_metadata, encode_name
from fusestore.testing.azurite import ACCOUNT, ACCOUNT_KEY, WRONG_KEY, AzuriteServer
from fusestore.testing.serverprocess import free_port

MiB = 1024 * 1024


@pytest.fixture
def container(azurite_server: AzuriteServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh container; the test's environment holds Azurite's key."""
    for name, value in azurite_server.environment().items():
        monkeypatch.setenv(name, value)
    name = f"t-{uuid.uuid4().hex[:16]}"
    azurite_server.create_bucket(name)
    return name


@pytest.fixture
def az(container: str, azurite_server: AzuriteServer) -> Iterator[AzureStore]:
    store = open_store(f"az://{container}", **azurite_server.store_options())
    assert isinstance(store, AzureStore)
    yield store
    store.close()


def _config(**given: object) -> dict[str, object]:
    config: dict[str, object] = {name: option.default for name, option in AzureStore.options.items()}
    config.update(given)
    return config


# -- metadata names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("mode", "mode"),
        ("owner-tag", "owner_htag"),
        ("build_42", "build__42"),
        ("9lives", "_d9lives"),
        ("a-_-b", "a_h___hb"),
        ("x__y", "x____y"),
        ("0", "_d0"),
    ],
)
def test_metadata_names_map_to_identifiers_and_back(name: str, stored: str) -> None:
    assert encode_name(name) == stored
    assert stored.isidentifier()
    assert decode_name(stored) == name
    assert decode_name(stored.upper()) == name  # Azure compares names without case


@pytest.mark.parametrize("foreign", ["Foo_Bar", "_x", "a_", "_dabc", "a_zb"])
def test_names_no_fusestore_name_maps_to_are_left_out(foreign: str) -> None:
    assert decode_name(foreign) is None


def test_metadata_with_dashes_underscores_and_digits_round_trips(az: AzureStore) -> None:
    meta = {"owner-tag": "build_42", "a_b": "1", "9lives": "cat", "x-_-y": "z", "mode": "33188"}
    etag = az.put("m", b"x", meta)
    assert az.head("m").metadata == meta
    (listed,) = az.list("", "/").objects
    assert listed.metadata == meta and listed.etag == etag
    raw = az.blob("m").get_blob_properties().metadata
    assert raw == encode_metadata(meta)
    assert all(name.isidentifier() for name in raw)
    upload = az.start_multipart("mp", meta)
    az.complete_multipart("mp", upload, [az.put_part("mp", upload, 1, b"data")])
    assert az.head("mp").metadata == meta


# -- credentials ----------------------------------------------------------------------------


def test_the_connection_string_comes_first(tmp_path: Path, azurite_server: AzuriteServer) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(WRONG_KEY)
    env = {
        "AZURE_STORAGE_CONNECTION_STRING": azurite_server.connection_string,
        "AZURE_STORAGE_KEY": WRONG_KEY,
        "AZURE_STORAGE_SAS_TOKEN": "sv=x&sig=y",
    }
    access = resolve(_config(account_key_file=str(key_file)), env)
    assert access.source == "AZURE_STORAGE_CONNECTION_STRING"
    assert (access.account, access.endpoint) == (ACCOUNT, azurite_server.endpoint_url)
    assert access.credential.named_key.key == ACCOUNT_KEY
    # A string for another account is not for this store.
    other = resolve(_config(account="otheraccount", account_key_file=str(key_file)), env)
    assert other.source == "account_key_file"


def test_a_key_file_comes_before_the_key_variable_and_sas(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(ACCOUNT_KEY + "\n")
    env = {
        "AZURE_STORAGE_ACCOUNT": "acct",
        "AZURE_STORAGE_KEY": WRONG_KEY,
        "AZURE_STORAGE_SAS_TOKEN": "sig=x",
    }
    access = resolve(_config(account_key_file=str(key_file)), env)
    assert access.source == "account_key_file" and access.credential.named_key == ("acct", ACCOUNT_KEY)
    assert access.endpoint == "https://acct.blob.core.windows.net"
    assert resolve(_config(), env).source == "AZURE_STORAGE_KEY"
    del env["AZURE_STORAGE_KEY"]
    sas = resolve(_config(), env)
    assert sas.source == "AZURE_STORAGE_SAS_TOKEN" and sas.credential.signature == "sig=x"
    token_file = tmp_path / "sas"
    token_file.write_text("?sv=2024&sig=fromfile\n")
    from_file = resolve(_config(sas_token_file=str(token_file)), env)
    assert from_file.source == "sas_token_file" and from_file.credential.signature == "sv=2024&sig=fromfile"
    del env["AZURE_STORAGE_SAS_TOKEN"]
    assert resolve(_config(), env).source == "DefaultAzureCredential"  # constructed, never asked here
    with pytest.raises(InvalidStoreURL, match="no storage account"):
        resolve(_config(), {})
    with pytest.raises(InvalidStoreURL, match="cannot be read"):
        resolve(_config(account="a", account_key_file=str(tmp_path / "missing")), {})


def test_each_credential_works_on_azurite(
    tmp_path: Path, container: str, azurite_server: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in azurite_server.environment():
        monkeypatch.delenv(name)
    endpoint = azurite_server.endpoint_url
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_server.connection_string)
    open_store(f"az://{container}").put("by-connection-string", b"1")
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")

    key_file = tmp_path / "key"
    key_file.write_text(ACCOUNT_KEY)
    keyed = open_store(
        f"az://{container}", account=ACCOUNT, endpoint=endpoint, account_key_file=str(key_file)
    )
    keyed.put("by-key-file", b"2")

    sas = generate_account_sas(
        ACCOUNT,
        ACCOUNT_KEY,
        ResourceTypes(container=True, object=True),
        AccountSasPermissions(read=True, write=True, list=True, delete=True, add=True, create=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    token_file = tmp_path / "sas"
    token_file.write_text(sas)
    signed = open_store(
        f"az://{container}", account=ACCOUNT, endpoint=endpoint, sas_token_file=str(token_file)
    )
    signed.put("by-sas", b"3")
    signed.copy("by-sas", "copied-by-sas")
    assert all_keys(signed) == ["by-connection-string", "by-key-file", "by-sas", "copied-by-sas"]


def test_secrets_stay_out_of_urls_reprs_and_messages(
    tmp_path: Path, container: str, azurite_server: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(WRONG_KEY)
    store = open_store(f"az://{container}", **azurite_server.store_options(), account_key_file=str(key_file))
    with pytest.raises(AccessDenied) as refused:
        store.probe()
    for text in (store.to_url(), repr(store), repr(store.access), str(refused.value)):
        assert WRONG_KEY not in text and ACCOUNT_KEY not in text
    assert f"account_key_file={key_file}".replace("/", "%2F") in store.to_url()
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_server.connection_string)
    from_env = open_store(f"az://{container}", endpoint=azurite_server.endpoint_url)
    assert ACCOUNT_KEY not in from_env.to_url() and ACCOUNT_KEY not in repr(from_env)
    assert open_store(from_env.to_url()).to_url() == from_env.to_url()


def test_credentials_in_the_url_and_bad_names_are_refused() -> None:
    with pytest.raises(InvalidStoreURL, match="credentials do not go"):
        open_store("az://acct:key@container")
    with pytest.raises(InvalidStoreURL, match="container name"):
        open_store("az://Bad_Name", account="a", anonymous=True)
    with pytest.raises(InvalidStoreURL, match="no container"):
        open_store("az:///x", account="a", anonymous=True)


def test_anonymous_stores_read_public_containers_and_write_nothing(
    azurite_server: AzuriteServer, container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    public = f"pub-{uuid.uuid4().hex[:12]}"
    azurite_server.client().create_container(public, public_access="container")
    azurite_server.client().get_blob_client(public, "open").upload_blob(b"to all")
    for name in azurite_server.environment():
        monkeypatch.delenv(name)
    store = open_store(f"az://{public}", **azurite_server.store_options(), anonymous=True)
    assert not store.writable
    assert store.get_range("open") == b"to all"
    assert all_keys(store) == ["open"]
    with pytest.raises(AccessDenied, match="read-only"):
        store.put("x", b"y")


# -- uploads, copies, deletes -------------------------------------------------------------


def test_a_big_file_goes_up_as_blocks_under_conditions(container: str, azurite_server: AzuriteServer) -> None:
    store = open_store(f"az://{container}", **azurite_server.store_options(), part_size="1M")
    assert store.preferred_part_size == MiB and store.part_size_for(5 * MiB) == MiB
    data = os.urandom(5 * MiB + 123)
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        first = store.put_file("big", f, len(data), {"uid": "7"}, multipart_threshold=2 * MiB)
        assert store.request_counts()["PutBlock"] == 6 + 1  # six parts, one metadata block
        assert store.request_counts()["PutBlockList"] == 1
        with pytest.raises(AlreadyExists):
            store.put_file("big", f, len(data), multipart_threshold=2 * MiB, if_none_match=True)
        with pytest.raises(PreconditionFailed):
            store.put_file("big", f, len(data), multipart_threshold=2 * MiB, if_match='"0x0"')
        second = store.put_file(
            "big", f, len(data), {"uid": "8"}, multipart_threshold=2 * MiB, if_match=first
        )
    assert second != first
    info = store.head("big")
    assert (info.size, info.etag, info.metadata) == (len(data), second, {"uid": "8"})
    assert store.get_range("big") == data
    committed, uncommitted = store.blob("big").get_block_list("all")  # type: ignore[attr-defined]
    assert [b.size for b in committed] == [MiB] * 5 + [123] and uncommitted == []
    assert store.list_multipart() == []


def test_part_sizes_grow_so_190_tib_fits_in_50000_blocks() -> None:
    store = AzureStore("bucket", account="a", anonymous=True)
    assert store.max_part_size == 4000 * MiB and store.max_parts == 50_000
    largest = store.max_object_size
    assert largest == 50_000 * 4000 * MiB
    part = store.part_size_for(largest)
    assert part == 4000 * MiB and -(-largest // part) <= 50_000
    assert store.part_size_for(100 * 1024 * MiB) == 3 * MiB


def test_an_upload_survives_a_restart_with_its_metadata(az: AzureStore) -> None:
    upload = az.start_multipart("later", {"mode": "33188", "xattr": "a" * 100})
    part = az.put_part("later", upload, 1, b"part one")
    az.uploads.forget()  # a new process knows only what the blob holds
    assert [(u.key, u.upload_id) for u in az.list_multipart()] == [("later", upload)]
    assert abs(az.list_multipart()[0].initiated - time.time()) < 60
    az.complete_multipart("later", upload, [part])
    assert az.head("later").metadata == {"mode": "33188", "xattr": "a" * 100}
    with pytest.raises(NotFound):
        az.complete_multipart("later", upload, [part])
    with pytest.raises(NotFound):
        az.put_part("later", "0123456789abcdef", 1, b"x")


def test_aborting_an_upload_over_an_existing_blob_hides_it_and_keeps_the_blob(az: AzureStore) -> None:
    etag = az.put("kept", b"old")
    upload = az.start_multipart("kept")
    az.put_part("kept", upload, 1, b"new")
    az.abort_multipart("kept", upload)
    assert az.list_multipart() == []
    assert az.head("kept").etag == etag and az.get_range("kept") == b"old"
    with pytest.raises(NotFound):
        az.put_part("kept", upload, 2, b"more")


def test_copies_keep_or_replace_metadata_and_check_the_source(az: AzureStore) -> None:
    az.put("src", b"payload", {"mode": "33188", "owner-tag": "t"})
    kept = az.copy("src", "kept")
    assert az.head("kept").metadata == {"mode": "33188", "owner-tag": "t"} and az.head("kept").etag == kept
    az.copy("src", "replaced", {"uid": "9"})
    assert az.head("replaced").metadata == {"uid": "9"}
    cleared = az.copy("src", "cleared", {})
    assert az.head("cleared").metadata == {} and az.head("cleared").etag == cleared
    seen = az.head("src")
    az.put("src", b"changed")
    with pytest.raises(PreconditionFailed):
        az.copy("src", "stale", expect=seen)
    with pytest.raises(NotFound):
        az.head("stale")
    assert az.request_counts()["CopyBlob"] == 4


def test_batch_delete_of_more_than_256_keys(az: AzureStore) -> None:
    keys = [f"del/{i:03d}" for i in range(300)]
    populate(az, [*keys, "keep"])
    az.delete_many([*keys, "never-was"])
    assert all_keys(az) == ["keep"]
    counts = az.request_counts()
    assert counts["BlobBatch"] == 2 and "DeleteBlob" not in counts


def test_deletes_go_blob_by_blob_where_batches_are_refused(az: AzureStore) -> None:
    populate(az, ["a", "b", "c"])
    az.deleter.batches = False  # what a refused Blob Batch leaves
    az.delete_many(["a", "b", "absent"])
    assert all_keys(az) == ["c"]
    assert az.request_counts()["DeleteBlob"] == 3 and "BlobBatch" not in az.request_counts()


# -- reads and listings ---------------------------------------------------------------------


def test_reads_fill_buffers_straight_from_the_socket(az: AzureStore) -> None:
    data = os.urandom(2 * MiB)
    az.put("r", data)
    buffer = memoryview(bytearray(MiB))
    with az.open_range("r", 10, MiB + 5) as reader:
        assert reader._direct is not None
        assert reader.readinto(buffer) > 0
    assert az.request_counts()["GetBlob"] == 1


def test_listing_pages_are_in_utf8_byte_order(az: AzureStore) -> None:
    keys = ["\U0001f600", "\uff01", "z", "dir\U0001f600/x", "dir\uff01/y"]
    populate(az, keys)
    page = az.list("", "/")
    assert [o.key for o in page.objects] == sorted(["\U0001f600", "\uff01", "z"], key=str.encode)
    assert page.prefixes == sorted(["dir\U0001f600/", "dir\uff01/"], key=str.encode)


def test_requests_are_counted_by_rest_operation(az: AzureStore) -> None:
    az.put("c", b"x")
    az.head("c")
    az.get_range("c")
    az.list()
    az.delete("c")
    assert az.request_counts() == {
        "PutBlob": 1,
        "GetBlobProperties": 1,
        "GetBlob": 1,
        "ListBlobs": 1,
        "DeleteBlob": 1,
    }


# -- probe and the command line -------------------------------------------------------------


def test_probe_names_a_missing_container(azurite_server: AzuriteServer, container: str) -> None:
    store = open_store("az://no-such-container", **azurite_server.store_options())
    with pytest.raises(StoreNotFound) as caught:
        store.probe()
    message = str(caught.value)
    assert "\n" not in message and "'no-such-container'" in message and ACCOUNT in message


def test_probe_names_refused_credentials(
    azurite_server: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in azurite_server.denied_environment().items():
        monkeypatch.setenv(name, value)
    azurite_server.create_bucket("probe-denied")
    with pytest.raises(AccessDenied) as caught:
        open_store("az://probe-denied", **azurite_server.store_options()).probe()
    message = str(caught.value)
    assert "\n" not in message and "'probe-denied'" in message and "AZURE_STORAGE_KEY" in message


def test_probe_of_a_dead_endpoint_is_unavailable_and_quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_KEY", ACCOUNT_KEY)
    dead = f"http://127.0.0.1:{free_port()}/{ACCOUNT}"
    store = open_store("az://box", account=ACCOUNT, endpoint=dead)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        store.probe()
    assert time.monotonic() - started < 10
    assert str(caught.value) == (
        f"cannot reach {dead} for container 'box' of storage account '{ACCOUNT}': "
        "[Errno 111] Connection refused"
    )


def _mount(url: str, mountpoint: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusestore", "mount", url, str(mountpoint)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


@pytest.mark.slow
def test_mount_of_a_missing_container_or_with_a_wrong_key_exits_2(
    azurite_server: AzuriteServer, tmp_path: Path
) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    query = f"endpoint={azurite_server.endpoint_url}&account={ACCOUNT}"
    result = _mount(f"az://missing-container?{query}", mountpoint, azurite_server.environment())
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'missing-container'" in lines[0] and "does not exist" in lines[0]

    azurite_server.create_bucket("mount-denied")
    result = _mount(f"az://mount-denied?{query}", mountpoint, azurite_server.denied_environment())
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused the credentials" in lines[0]
    assert WRONG_KEY not in result.stderr


def test_aborting_an_upload_to_a_new_key_removes_its_blocks(az: AzureStore) -> None:
    upload = az.start_multipart("fresh/k", {"mode": "33188"})
    az.put_part("fresh/k", upload, 1, b"x")
    az.abort_multipart("fresh/k", upload)
    az.uploads.forget()  # not hidden by this process's memory: gone from the service
    assert az.list_multipart() == []
    assert list(az.client.list_blobs(include=["uncommittedblobs"])) == []
    with pytest.raises(NotFound):
        az.complete_multipart("fresh/k", upload, [])


def test_debug_log_has_a_line_per_request_and_no_secret(
    az: AzureStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="fusestore.stores.azure"):
        az.put("dir/logged file", b"12345")
        with pytest.raises(NotFound):
            az.head("absent")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("store request:")]
    assert len(lines) == 2
    assert lines[0].startswith("store request: op=PutBlob key='dir/logged file' status=201 ms=")
    assert lines[1].startswith("store request: op=GetBlobProperties key='absent' status=404:BlobNotFound ms=")
    assert all(ACCOUNT_KEY not in r.getMessage() for r in caplog.records)


def test_a_sign_in_that_finds_no_credential_says_what_to_set() -> None:
    errors = ErrorMap("acct", "box", "https://acct.blob.core.windows.net", "DefaultAzureCredential")
    with pytest.raises(AccessDenied) as caught, errors.translate("k"):
        raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token.\nAttempted: ...")
    assert str(caught.value) == (
        "no credential for storage account 'acct' (DefaultAzureCredential failed to retrieve a token.); "
        "set AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY or account_key_file, "
        "AZURE_STORAGE_SAS_TOKEN or sas_token_file, or sign in to Entra ID"
    )


def test_no_credential_for_a_plain_http_endpoint_is_one_line() -> None:
    """With nothing set, the chain ends at Entra ID sign-in, whose tokens the SDK sends
    over HTTPS only: an http:// endpoint (an emulator's) gets a one-line AccessDenied at
    opening, not the SDK's ValueError at the first request."""
    config = {"account": "devstoreaccount1", "endpoint": "http://127.0.0.1:1/devstoreaccount1"}
    with pytest.raises(AccessDenied) as caught:
        open_store("az://box", **config).probe()
    message = str(caught.value)
    assert "\n" not in message
    assert "http://" in message and "AZURE_STORAGE_KEY" in message

"""Opening stores by URL: schemes, options, one-line errors, third-party entry points."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from fusestore.stores import InvalidStoreURL, available_schemes, open_store
from fusestore.stores.file import FileStore
from fusestore.stores.memory import MemoryStore
from fusestore.stores.s3 import S3Store


def test_builtin_schemes_open_their_drivers(tmp_path: Path) -> None:
    assert isinstance(open_store("s3://bucket/prefix"), S3Store)
    assert isinstance(open_store(f"file://{tmp_path}"), FileStore)
    assert isinstance(open_store("memory://name"), MemoryStore)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "gopher://x/y",
            "unknown store scheme 'gopher://' in 'gopher://x/y'; "
            "known schemes: az://, file://, gs://, memory://, s3://",
        ),
        (
            "/just/a/path",
            "not a store URL: '/just/a/path'; expected SCHEME://..., "
            "one of: az://, file://, gs://, memory://, s3://",
        ),
        ("s3://bkt?colour=blue", "unknown option 'colour' for s3:// stores (known: "),
        ("s3://bkt?max_connections=many", "option max_connections='many' is not a valid int"),
        ("s3://bkt?path_style=maybe", "option path_style='maybe' is not a yes/no value"),
        ("file://relative/path", "file:// URLs take an absolute local path"),
        ("s3://bkt/p#frag", "store URLs have no #fragment"),
    ],
)
def test_bad_urls_give_one_line_errors(url: str, message: str) -> None:
    with pytest.raises(InvalidStoreURL) as caught:
        open_store(url)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_keyword_options_override_the_query() -> None:
    store = open_store("s3://bkt?region=eu-west-1&path-style=yes", region="us-west-2")
    assert isinstance(store, S3Store)
    assert store.config["region"] == "us-west-2"
    assert store.config["path_style"] is True


def test_options_round_trip_through_to_url(tmp_path: Path) -> None:
    urls = [
        "s3://bkt/a/b?endpoint_url=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-1&path_style=false&read_timeout=5.0",
        f"file://{tmp_path}?fsync=false&read_only=true",
        "memory://shared/pre?capacity=100",
    ]
    for url in urls:
        assert open_store(url).to_url() == url
        assert open_store(open_store(url).to_url()).to_url() == url


def test_third_party_driver_found_through_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fusestore_demo_driver.py").write_text(
        textwrap.dedent("""
        from fusestore.stores.memory import MemoryStore

        class DemoStore(MemoryStore):
            scheme = "demo"

            def to_url(self):
                return "demo://" + self.name
    """)
    )
    dist = tmp_path / "fusestore_demo_driver-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fusestore-demo-driver\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[fusestore.stores]\ndemo = fusestore_demo_driver:DemoStore\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert available_schemes()["demo"] == "fusestore_demo_driver:DemoStore"
    store = open_store("demo://thing")
    assert type(store).__name__ == "DemoStore"
    store.put("k", b"v")
    assert open_store("demo://thing").get_range("k") == b"v"
    sys.modules.pop("fusestore_demo_driver", None)


def test_broken_third_party_driver_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "broken_driver-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-driver\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[fusestore.stores]\nbroken = no_such_module:Store\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        InvalidStoreURL, match=r"the driver for broken:// \(no_such_module:Store\) cannot be loaded"
    ):
        open_store("broken://x")


@pytest.mark.parametrize(
    "url",
    [
        "s3://bkt/../x",
        "s3://bkt/./x",
        "s3://bkt/a//b",
        "s3://bkt/a/..",
        "s3://bkt//a",
        "memory://name/a/../b",
        "file:///tmp/x/../y",
        "file:///tmp/./y",
    ],
)
def test_a_prefix_with_dot_dotdot_or_empty_names_is_refused(url: str) -> None:
    """A URL's folder names keys: `s3://b/../x` would write `../x/f`, which no file name
    maps to and many servers refuse; `s3://b/a//b` names keys no other tool finds."""
    with pytest.raises(InvalidStoreURL) as caught:
        open_store(url)
    message = str(caught.value)
    assert "\n" not in message
    assert "an empty, '.' or '..' name" in message, message


@pytest.mark.parametrize("url", ["s3://bkt/team/a/", "s3://bkt/team/a", "s3://bkt/", "memory://n/p/"])
def test_a_prefix_may_end_with_one_slash(url: str) -> None:
    assert open_store(url).keys.prefix in ("team/a/", "", "p/")


@pytest.mark.parametrize(
    ("url", "sdk", "driver", "extra"),
    [
        ("az://container", "azure.storage.blob", "fusestore.stores.azure", "azure"),
        ("gs://bucket", "google.cloud.storage", "fusestore.stores.gcs", "gcs"),
    ],
)
def test_a_driver_whose_sdk_is_missing_names_the_extra_to_install(
    url: str, sdk: str, driver: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, sdk, None)  # `import` of it fails as if not installed
    monkeypatch.delitem(sys.modules, driver, raising=False)
    with pytest.raises(InvalidStoreURL) as raised:
        open_store(url)
    message = str(raised.value)
    assert f"pip install 'fusestore[{extra}]'" in message
    assert "\n" not in message

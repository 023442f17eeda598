"""Mount options declared once: the command line, the config file, `-o` and the Python API
take the same options, store drivers' own included, and they reach what they configure."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from fusestore.api import _arguments
from fusestore.cli import main
from fusestore.mountoptions import DAEMON, MOUNT_OPTIONS, SETTINGS
from fusestore.service import launch
from fusestore.stores import InvalidStoreURL, open_store


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The options each mount opens its store with (the mount stops there)."""
    calls: list[dict[str, Any]] = []

    def fake_open_store(url: str, **options: Any) -> Any:
        calls.append({"url": url, **options})
        raise InvalidStoreURL("stopped by the test")

    monkeypatch.setattr(launch, "open_store", fake_open_store)
    return calls


def mount(*args: str) -> int:
    with pytest.raises(SystemExit) as exited:
        main.main(["mount", *args], prog_name="fusestore")
    return int(exited.value.code or 0)


def test_o_takes_the_drivers_own_options(tmp_path: Path, opened: list[dict[str, Any]]) -> None:
    code = mount("s3://bucket", str(tmp_path), "-o", "path_style=true,max_attempts=3,cache_size=1G,_netdev")
    assert code == 2  # the test's refusal
    [options] = opened
    assert options["path_style"] == "true" and options["max_attempts"] == "3"
    assert "cache_size" not in options  # a mount setting, not the store's
    store = open_store(options.pop("url"), **options)
    assert store.config["path_style"] is True and store.config["max_attempts"] == 3  # type: ignore[attr-defined]


def test_the_config_file_takes_the_drivers_own_options(tmp_path: Path, opened: list[dict[str, Any]]) -> None:
    config = tmp_path / "m.toml"
    config.write_text(
        f'url = "s3://bucket"\nmountpoint = "{tmp_path}"\npath-style = false\nmax_attempts = 2\n'
    )
    assert mount("-o", "max_attempts=4", "--config", str(config), "--endpoint-url", "http://127.0.0.1:1") == 2
    [options] = opened
    assert options["path_style"] is False
    assert options["max_attempts"] == "4", "-o wins over the file"
    assert options["endpoint_url"] == "http://127.0.0.1:1"


def test_a_name_no_option_has_is_still_refused(tmp_path: Path, opened: list[dict[str, Any]]) -> None:
    # capacity is an option of memory:// stores, not of s3:// ones
    assert mount("s3://bucket", str(tmp_path), "-o", "capacity=5") == 2
    assert mount("memory://", str(tmp_path), "-o", "capacity=5") == 2
    assert [options["capacity"] for options in opened] == ["5"]


def test_o_takes_a_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    requests: list[launch.MountRequest] = []
    monkeypatch.setattr(launch, "start_mount", lambda request: requests.append(request) or 0)
    assert mount("s3://bucket", str(tmp_path), "-o", "link=/d=s3://other/x") == 0
    assert requests[0].options["link"] == ("/d=s3://other/x",)


def test_the_python_api_passes_driver_options_as_o() -> None:
    assert _arguments("s3://b", {"path_style": True, "cache_size": "1G", "read_only": True}) == [
        "-o",
        "path_style=true",
        "--cache-size",
        "1G",
        "--read-only",
    ]


def test_the_python_api_refuses_bad_options_in_python_words(tmp_path: Path) -> None:
    """Raised before any process starts, as a Python call's errors, never click's
    command-line wording (`No such option: --cache-sz`). (A dead local endpoint: were a
    check missing, the mount would fail there, never reach out.)"""
    import fusestore

    def mount(**options: Any) -> None:
        fusestore.mount("s3://bucket", tmp_path, endpoint_url="http://127.0.0.1:9", **options)

    with pytest.raises(
        TypeError, match=r"^mount\(\) got an unknown option 'cache_sz' \(did you mean 'cache_size'\?\)$"
    ):
        mount(cache_sz="1G")
    with pytest.raises(TypeError, match=r"^mount\(\) got an unknown option 'bogus'$"):
        _arguments("s3://bucket", {"bogus": 1})
    with pytest.raises(
        ValueError, match=r"^cache_size='lots': 'lots' is not a size \(examples: 10G, 512M, 1048576\)$"
    ):
        mount(cache_size="lots")
    with pytest.raises(TypeError, match=r"^read_only is a flag: give True or False, not 'yes'$"):
        mount(read_only="yes")
    with pytest.raises(ValueError, match=r"^link=\{'/data': 'elsewhere'\}: a link is PATH=URL"):
        mount(link={"/data": "elsewhere"})
    with pytest.raises(ValueError, match=r"^writeback_delay=-1: "):
        mount(writeback_delay=-1)
    assert _arguments("s3://b", {"cache_size": 2**30, "link": {"/d": "s3://other/x"}}) == [
        "--cache-size",
        str(2**30),
        "--link",
        "/d=s3://other/x",
    ]


def test_the_s3_request_options_come_from_every_source(tmp_path: Path, opened: list[dict[str, Any]]) -> None:
    key = tmp_path / "customer.key"
    key.write_bytes(bytes(range(32)))
    config = tmp_path / "m.toml"
    config.write_text(
        f'url = "s3://bucket?storage_class=STANDARD_IA"\nmountpoint = "{tmp_path}"\n'
        f'sse_c_key_file = "{key}"\npart_size = "16M"\nrequester_pays = true\n'
    )
    assert (
        mount("--config", str(config), "-o", "acl=bucket-owner-full-control,max_upload_rate=1M,anonymous")
        == 2
    )
    [options] = opened
    store = open_store(options.pop("url"), **options)
    assert {name: store.config[name] for name in ("storage_class", "part_size", "acl")} == {  # type: ignore[attr-defined]
        "storage_class": "STANDARD_IA",
        "part_size": 16 * 2**20,
        "acl": "bucket-owner-full-control",
    }
    assert store.config["requester_pays"] and store.config["anonymous"]  # type: ignore[attr-defined]
    assert store.config["max_upload_rate"] == 2**20  # type: ignore[attr-defined]
    assert not store.writable
    api = {"sse": "aws:kms", "sse_kms_key_id": "alias/k", "anonymous": True, "max_download_rate": "5M"}
    assert _arguments("s3://b", api) == [
        "-o",
        "sse=aws:kms",
        "-o",
        "sse_kms_key_id=alias/k",
        "-o",
        "anonymous=true",
        "-o",
        "max_download_rate=5M",
    ]


@pytest.mark.parametrize(
    ("option", "line"),
    [
        ("sse=foo", "sse must be one of AES256, aws:kms, not 'foo'"),
        ("sse_c_key_file=/nonexistent/key", "sse_c_key_file /nonexistent/key cannot be read: No such file"),
        ("part_size=1M", "part_size must be between 5 MiB and 5 GiB"),
    ],
)
def test_a_bad_s3_option_stops_the_mount_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, line: str
) -> None:
    assert mount("s3://bucket", str(tmp_path / "mnt"), "-o", option) == 2
    [said] = capsys.readouterr().err.strip().splitlines()
    assert said.startswith("fusestore: error: ") and line in said


def test_the_python_api_passes_modes_given_as_numbers_in_octal() -> None:
    args = _arguments("s3://b", {"file_mode": 0o640, "dir_mode": "0750", "umask": 0o27})
    assert args == ["--file-mode", "640", "--dir-mode", "0750", "--umask", "27"]


def test_the_declared_defaults_are_the_daemons_own() -> None:
    from fusestore.core import MountSettings
    from fusestore.service.daemon import DaemonOptions

    params = {param.name: param for param in main.commands["mount"].params}
    for goes_to, target in ((SETTINGS, MountSettings), (DAEMON, DaemonOptions)):
        fields = {field.name: field for field in dataclasses.fields(target)}
        built = target()
        for option in MOUNT_OPTIONS:
            if option.goes_to != goes_to:
                continue
            assert option.name in fields, f"{option.name} is no field of {target.__name__}"
            assert option.name in params
            if option.default is not None:
                declared = params[option.name].type_cast_value(None, option.default)  # type: ignore[arg-type]
                assert declared == getattr(built, option.name), option.name


def test_metrics_addr_from_o_the_config_file_and_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests: list[launch.MountRequest] = []
    monkeypatch.setattr(launch, "start_mount", lambda request: requests.append(request) or 0)
    assert mount("s3://bucket", str(tmp_path), "-o", "metrics_addr=0.0.0.0:9464") == 0
    config = tmp_path / "m.toml"
    config.write_text(f'url = "s3://bucket"\nmountpoint = "{tmp_path}"\nmetrics_addr = 9465\n')
    assert mount("--config", str(config)) == 0
    assert mount("s3://bucket", str(tmp_path), *_arguments("s3://bucket", {"metrics_addr": "9466"})[:2]) == 0
    assert [request.options["metrics_addr"] for request in requests] == [
        ("0.0.0.0", 9464),
        ("127.0.0.1", 9465),
        ("127.0.0.1", 9466),
    ]
    assert mount("s3://bucket", str(tmp_path), "-o", "metrics_addr=nope") == 2
    assert len(requests) == 3

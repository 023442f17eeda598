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
    assert _arguments("s3://b", {"bogus": 1}) == ["--bogus", "1"], "refused by the command line"


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

"""The systemd units and contrib files: systemd accepts them, and they match the CLI's contract."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "systemd"
TEMPLATE = SYSTEMD / "fusestore@.service"
TOML_EXAMPLE = ROOT / "contrib" / "fusestore.toml.example"

EXEC_START = "ExecStart=/usr/bin/env fusestore mount --config /etc/fusestore/%i.toml"
EXEC_STOP = "ExecStop=/usr/bin/env fusestore umount --config /etc/fusestore/%i.toml"

#: Every key `fusestore mount --config FILE` accepts.
CONFIG_KEYS = {
    "url",
    "metrics_addr",
    "mountpoint",
    "endpoint_url",
    "region",
    "profile",
    "cache_dir",
    "cache_size",
    "dirty_limit",
    "writeback_delay",
    "upload_at_close",
    "metadata_ttl",
    "max_entries",
    "conflict_name",
    "key_prefix",
    "fsync",
    "exact_attrs",
    "io_timeout",
    "uid",
    "gid",
    "umask",
    "file_mode",
    "dir_mode",
    "negative_ttl",
    "allow_other",
    "allow_root",
    "log_file",
    "read_only",
    "log_level",
    "unmount_timeout",
    "upload_workers",
}
#: Keys without a default: TOML has no null, so the example shows them commented out.
UNSET_KEYS = {
    "endpoint_url",
    "region",
    "profile",
    "cache_dir",
    "uid",
    "gid",
    "key_prefix",
    "file_mode",
    "dir_mode",
    "negative_ttl",
    "log_file",
    "metrics_addr",
}

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def verify(unit: Path) -> None:
    """`systemd-analyze verify` accepts `unit` without a single warning."""
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


def directives(unit: Path, key: str) -> list[str]:
    """The `key=...` lines of a unit file, stripped, comments skipped."""
    lines = (line.strip() for line in unit.read_text().splitlines())
    return [line for line in lines if line.split("=", 1)[0].strip() == key]


@pytest.mark.timeout(60)
@needs_systemd_analyze
def test_template_verifies() -> None:
    verify(TEMPLATE)


@pytest.mark.timeout(60)
@needs_systemd_analyze
def test_instance_verifies(tmp_path: Path) -> None:
    instance = tmp_path / "fusestore@demo.service"
    shutil.copyfile(TEMPLATE, instance)
    verify(instance)


@pytest.mark.timeout(60)
@needs_systemd_analyze
@pytest.mark.parametrize("name", ["mnt-photos.mount", "mnt-photos.automount"])
def test_example_mount_units_verify(name: str) -> None:
    verify(SYSTEMD / name)


@pytest.mark.timeout(60)
def test_mount_units_are_named_after_their_mountpoint() -> None:
    # systemd refuses a mount or automount unit whose name is not its escaped Where=.
    for unit in (SYSTEMD / "mnt-photos.mount", SYSTEMD / "mnt-photos.automount"):
        assert directives(unit, "Where") == ["Where=/mnt/photos"]


@pytest.mark.timeout(60)
def test_unit_runs_the_documented_commands() -> None:
    assert directives(TEMPLATE, "ExecStart") == [EXEC_START]
    assert directives(TEMPLATE, "ExecStop") == [EXEC_STOP]


@pytest.mark.timeout(60)
def test_readme_shows_the_unit_command() -> None:
    readme_lines = [line.strip() for line in (ROOT / "README.md").read_text().splitlines()]
    assert EXEC_START in readme_lines, f"README.md should show the line: {EXEC_START}"


@pytest.mark.timeout(60)
def test_unit_keeps_the_mount_visible_to_the_host() -> None:
    # Each of these makes systemd run the daemon in its own mount namespace, where the FUSE
    # mount it makes would be invisible to every other process.
    namespaced = {
        "PrivateMounts",
        "ProtectSystem",
        "PrivateTmp",
        "PrivateDevices",
        "PrivateIPC",
        "PrivateNetwork",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectProc",
        "ProcSubset",
        "ReadOnlyPaths",
        "ReadWritePaths",
        "InaccessiblePaths",
        "BindPaths",
        "BindReadOnlyPaths",
        "TemporaryFileSystem",
        "RootDirectory",
        "RootImage",
    }
    for key in namespaced:
        assert directives(TEMPLATE, key) == [], f"{key}= would hide the mount from the host"
    assert directives(TEMPLATE, "ProtectHome") in ([], ["ProtectHome=no"])


@pytest.mark.timeout(60)
def test_config_example_documents_every_key() -> None:
    text = TOML_EXAMPLE.read_text()
    config = tomllib.loads(text)
    # A commented-out key is one line "# key = value" that is valid TOML once uncommented.
    commented: dict[str, object] = {}
    for line in text.splitlines():
        if re.match(r"# [a-z_]+ = \S", line):
            commented.update(tomllib.loads(line.removeprefix("# ")))
    assert set(config) == CONFIG_KEYS - UNSET_KEYS
    assert set(commented) == UNSET_KEYS
    assert config["url"] == "s3://my-bucket/photos"
    assert config["mountpoint"] == "/mnt/photos"
    assert config["fsync"] in ("local", "remote")


@pytest.mark.timeout(60)
def test_config_example_values_are_the_defaults() -> None:
    from fusestore.cli import main

    mount = main.commands["mount"]
    ctx = mount.make_context("mount", ["s3://my-bucket/photos", "/mnt/photos"])
    params = {param.name: param for param in mount.params}
    for key, value in tomllib.loads(TOML_EXAMPLE.read_text()).items():
        default = ctx.params.get(key)
        if key in ("url", "mountpoint") or default is None:
            continue
        assert params[key].type_cast_value(ctx, value) == default, f"{key} = {value!r} is not the default"


@pytest.mark.timeout(60)
def test_deploy_guide_config_is_a_valid_mount_config() -> None:
    from fusestore.cli import main

    block = re.search(r"```toml\n(.*?)```", (ROOT / "docs" / "deploy.md").read_text(), re.S)
    assert block is not None, "docs/deploy.md shows a config file"
    mount = main.commands["mount"]
    ctx = mount.make_context("mount", ["s3://my-bucket/photos", "/mnt/photos"])
    params = {param.name: param for param in mount.params}
    for key, value in tomllib.loads(block.group(1)).items():
        assert key in params, f"docs/deploy.md: {key} is no option of fusestore mount"
        params[key].type_cast_value(ctx, value)

"""Mount options from a TOML file and from mount(8)-style `-o opt,opt=value` strings.

Both use the long option names of `fusestore mount` (`cache_size`, `endpoint_url`, ...;
dashes and underscores are the same), plus `url` and `mountpoint`, and the options of the
store's driver (`path_style`, ...; see `mountoptions`). The command line wins
over `-o`, which wins over the file. Values are checked by the same click types as on the
command line, so `cache_size = "10Q"` fails just like `--cache-size 10Q`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

#: Options mount(8) and fstab pass that mean nothing to fusestore (or are always on:
#: the mount is nosuid,nodev), ignored in `-o`.
IGNORED_MOUNT_OPTIONS = frozenset(
    {
        "defaults",
        "rw",
        "auto",
        "noauto",
        "user",
        "users",
        "nouser",
        "owner",
        "group",
        "_netdev",
        "nofail",
        "exec",
        "noexec",
        "suid",
        "nosuid",
        "dev",
        "nodev",
        "async",
        "sync",
        "atime",
        "noatime",
        "relatime",
        "strictatime",
        "lazytime",
        "nodiratime",
        "diratime",
        "loud",
        "silent",
    }
)
#: mount(8) spellings of fusestore options.
MOUNT_OPTION_ALIASES = {"ro": ("read_only", True)}


class ConfigError(ValueError):
    """A config file or `-o` string cannot be used; the message names the key and the file."""


def normalize(name: str) -> str:
    return name.strip().replace("-", "_")


def load_file(path: str | Path) -> dict[str, Any]:
    """The options in a TOML file, by normalized name (not yet checked against the command)."""
    try:
        with open(path, "rb") as source:
            data = tomllib.load(source)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    options: dict[str, Any] = {}
    for key, value in data.items():
        if key == "links" and isinstance(value, dict):
            # [links] "/datasets" = "s3://…": the --link PATH=URL options
            options["link"] = [f"{path}={url}" for path, url in value.items()]
            continue
        if isinstance(value, dict):
            raise ConfigError(f"config file {path}: [{key}] tables are not options; write {key}_… = … keys")
        options[normalize(key)] = value
    return options


def parse_mount_options(text: str) -> dict[str, Any]:
    """`endpoint_url=http://…,cache_size=10G,allow_other,ro,_netdev` → options.

    A flag without a value is True; mount(8)'s own options (`rw`, `_netdev`, `noauto`,
    `x-systemd.*`, ...) are dropped. Commas inside values are not supported (none of
    fusestore's options takes one).
    """
    options: dict[str, Any] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, has_value, value = item.partition("=")
        name = normalize(name)
        if name in IGNORED_MOUNT_OPTIONS or name.startswith(("x_", "comment")):
            continue
        if name in MOUNT_OPTION_ALIASES and not has_value:
            alias, flag = MOUNT_OPTION_ALIASES[name]
            options[alias] = flag
            continue
        options[name] = value if has_value else True
    return options


def check_keys(options: dict[str, Any], known: set[str], where: str) -> None:
    """ConfigError naming the first key that is no option of the command."""
    for key in options:
        if key not in known:
            raise ConfigError(f"{where}: unknown option {key!r} (options are the long names of --help)")

"""Every option of `fusestore mount`, declared once.

From each declaration come the click option of `fusestore mount` (name, type, default,
help), the config-file key and the `-o` name (the same name, checked by the same type),
the Python API's keyword, and where launching hands the value on: the core's
`MountSettings`, the store's options, the daemon's `DaemonOptions`, or launching itself.
A new option is one entry in `MOUNT_OPTIONS` (and the field that receives it).

A store driver's own options (`path_style`, `max_attempts`, ...) are declared by the
driver (`stores/options.py`); `-o` and the config file take them by name too, for the
scheme of the URL being mounted (`driver_options`). Where a mount option and a driver
option share a name (`read_only`, `fsync`, `key_prefix`), the name is the mount option.

Imports only `conflicts` and the stores (neither the core nor the daemon, so the command
line stays quick to start); `MountSettings` and `DaemonOptions` keep their own defaults for
programs that build them directly, and a test holds them equal to these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import click

from .stores.links import parse_link
from .writeback.conflicts import DEFAULT_TEMPLATE, ConflictNames

#: Where a value goes (see `MountOption.goes_to`).
SETTINGS = "settings"  # a field of core.MountSettings of the same name
STORE = "store"  # a store option of the same name (given only when set)
DAEMON = "daemon"  # a field of daemon.DaemonOptions of the same name
LAUNCH = "launch"  # used by launching itself (cache directory, links, faults, ...)

LOG_LEVELS = ["debug", "info", "warning", "error"]


class ByteSize(click.ParamType[int]):
    """`10G`, `512M`, `64k` or a plain number of bytes (binary units)."""

    name = "size"
    _units = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower().removesuffix("ib").removesuffix("b")
        unit = text[-1:] if text[-1:] in self._units and not text[-1:].isdigit() else ""
        number = text[: len(text) - len(unit)]
        try:
            size = int(float(number) * self._units[unit])
        except ValueError:
            self.fail(f"{value!r} is not a size (examples: 10G, 512M, 1048576)", param, ctx)
        if size < 0:
            self.fail(f"{value!r} is negative", param, ctx)
        return size


class Octal(click.ParamType[int]):
    """An octal number of mode bits, `022` or `0o644`, from 0 to `highest`."""

    name = "octal"

    def __init__(self, highest: int = 0o777, example: str = "022") -> None:
        self.highest = highest
        self.example = example

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            number = value if isinstance(value, int) else int(str(value).strip().removeprefix("0o"), 8)
        except ValueError:
            self.fail(f"{value!r} is not an octal mode like {self.example}", param, ctx)
        if not 0 <= number <= self.highest:
            self.fail(f"{value!r} is not an octal mode from 0 to {self.highest:o}", param, ctx)
        return number


class Address(click.ParamType[tuple[str, int]]):
    """`PORT`, `HOST:PORT` or `[IPv6]:PORT`, as (host, port); a port alone (or an empty
    host) is this machine only (`LOOPBACK`)."""

    name = "address"
    LOOPBACK = "127.0.0.1"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        text = str(value).strip()
        host, colon, port_text = text.rpartition(":")
        if not colon:
            host, port_text = "", text
        host = host.removeprefix("[").removesuffix("]")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            self.fail(
                f"{value!r} is not [HOST:]PORT with a port of 1-65535 (examples: 9464, 0.0.0.0:9464)",
                param,
                ctx,
            )
        return host or self.LOOPBACK, int(port_text)


def _check_links(value: tuple[str, ...]) -> None:
    for spec in value:
        parse_link(spec)


def _check_conflict_name(value: str) -> None:
    ConflictNames(value, host="host")


@dataclass(frozen=True)
class MountOption:
    """One option of `fusestore mount`: `--NAME-WITH-DASHES` on the command line, `NAME`
    in a config file, in `-o` and as the Python API's keyword."""

    name: str
    help: str
    #: SETTINGS, STORE, DAEMON or LAUNCH: which object receives the value
    goes_to: str
    #: a click type (or Python type); None: text
    type: Any = None
    #: as a user writes it (`"10G"`), converted by `type`; None: none
    default: Any = None
    show_default: bool = False
    is_flag: bool = False
    multiple: bool = False
    metavar: str | None = None
    #: raises ValueError for a value the type accepts but the option cannot use
    check: Callable[[Any], None] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def click_option(self, callback: Callable[..., Any] | None = None) -> Callable[[Any], Any]:
        """The decorator adding this option to a click command."""
        given = {
            "type": self.type,
            "default": self.default,
            "show_default": self.show_default or None,
            "is_flag": self.is_flag or None,
            "multiple": self.multiple or None,
            "metavar": self.metavar,
            "callback": callback,
        }
        kwargs = {key: value for key, value in given.items() if value is not None}
        return click.option(self.flag, self.name, help=self.help, **kwargs)


MOUNT_OPTIONS: tuple[MountOption, ...] = (
    MountOption("endpoint_url", "S3 endpoint of a non-AWS server (MinIO, Ceph, SeaweedFS).", STORE),
    MountOption("region", "S3 region (default: from the AWS config, else us-east-1).", STORE),
    MountOption("profile", "Profile in ~/.aws/config and ~/.aws/credentials.", STORE),
    MountOption(
        "cache_dir",
        "Cache directory [default: one per store under "
        "$XDG_CACHE_HOME/fusestore, or /var/cache/fusestore for root].",
        LAUNCH,
        type=click.Path(),
    ),
    MountOption(
        "cache_size",
        "Clean data kept in the cache before the least recently used is evicted.",
        SETTINGS,
        type=ByteSize(),
        default="10G",
        show_default=True,
    ),
    MountOption(
        "dirty_limit",
        "Changed data not yet uploaded; writers wait when it is reached.",
        SETTINGS,
        type=ByteSize(),
        default="2G",
        show_default=True,
    ),
    MountOption(
        "writeback_delay",
        "Seconds after a file's last write or close before it is uploaded.",
        SETTINGS,
        type=click.FloatRange(min=0),
        default=2.0,
        show_default=True,
    ),
    MountOption(
        "upload_at_close",
        "A new file at least this big is uploaded as soon as it is closed, without the "
        "write-back delay (0: never).",
        SETTINGS,
        type=ByteSize(),
        default="16M",
        show_default=True,
    ),
    MountOption(
        "metadata_ttl",
        "Seconds what a listing (or HEAD) showed is trusted before the store is asked again: "
        "other clients' changes show up after at most this long.",
        SETTINGS,
        type=click.FloatRange(min=0),
        default=60.0,
        show_default=True,
    ),
    MountOption(
        "negative_ttl",
        "Seconds a name found absent stays known absent, to the kernel and to the mount (a lookup "
        "of it past this lists its directory again): a file another client made shows up after at "
        "most this long. Never longer than --metadata-ttl [default: --metadata-ttl].",
        SETTINGS,
        type=click.FloatRange(min=0),
        metavar="SECONDS",
    ),
    MountOption(
        "max_entries",
        "Files and directories the mount keeps in memory (and the kernel with it): past this "
        "many, the kernel forgets the entries of the directories read least recently, and they "
        "are listed again when next used (from the index, without asking the store, inside "
        "--metadata-ttl). About 0.5 KiB of the daemon and 1 KiB of the kernel's memory each.",
        SETTINGS,
        type=click.IntRange(min=1000),
        default=250_000,
        show_default=True,
    ),
    MountOption(
        "key_prefix",
        "A view: show (and let be made) only the names at the top of the store that begin with "
        "START, e.g. logs- (the store option key_prefix).",
        STORE,
        metavar="START",
    ),
    MountOption(
        "link",
        "Show another store read-only at PATH of the mount, e.g. /datasets=s3://public-bucket/prefix "
        "(repeatable; in a config file, a [links] table). Its endpoint, region and profile default to the "
        "mount's own.",
        LAUNCH,
        multiple=True,
        metavar="PATH=URL",
        check=_check_links,
    ),
    MountOption(
        "conflict_name",
        "How the copy of a change another client beat to the store is named, next to the file: "
        "{stem} and {time} are required, {ext} and {host} optional.",
        SETTINGS,
        default=DEFAULT_TEMPLATE,
        show_default=True,
        check=_check_conflict_name,
    ),
    MountOption(
        "fsync",
        "What fsync waits for: the change safe on this machine's disk (local), or in the store (remote).",
        SETTINGS,
        type=click.Choice(["local", "remote"]),
        default="local",
        show_default=True,
    ),
    MountOption(
        "exact_attrs",
        "Read each object's stored mode, owner, mtime and symlink flag on its first lookup "
        "(one HEAD per object). Without it only objects of up to 4095 bytes (possible symlinks) "
        "are read so; others show the listing's attributes until the file is changed.",
        SETTINGS,
        is_flag=True,
    ),
    MountOption(
        "xattr",
        "Keep extended attributes: user.* names, stored with each object as s3fs does (-o xattr). "
        "Off by default, as in s3fs: while a mount answers them, the kernel asks it about "
        "security.capability before every write(), which makes small writes about 20 times slower.",
        SETTINGS,
        is_flag=True,
    ),
    MountOption("uid", "Owner of objects that carry none [default: you].", SETTINGS, type=int),
    MountOption("gid", "Group of objects that carry none [default: your group].", SETTINGS, type=int),
    MountOption(
        "umask",
        "Mode bits cleared for objects and directories that carry no mode (0666 for files, 0777 "
        "for directories, less these bits), where --file-mode or --dir-mode does not say.",
        SETTINGS,
        type=Octal(),
        default="022",
        show_default=True,
    ),
    MountOption(
        "file_mode",
        "Mode of files whose object carries none, e.g. 0640; wins over --umask for files "
        "[default: 0666 less --umask].",
        SETTINGS,
        type=Octal(0o7777, "0644"),
    ),
    MountOption(
        "dir_mode",
        "Mode of directories that carry none (no marker, or one without a mode), e.g. 0750; "
        "wins over --umask for directories [default: 0777 less --umask].",
        SETTINGS,
        type=Octal(0o7777, "0755"),
    ),
    MountOption(
        "allow_other",
        "Let other users than the one mounting use the mount (their access is still checked "
        "against each file's mode). Not with --allow-root.",
        DAEMON,
        is_flag=True,
    ),
    MountOption(
        "allow_root",
        "Let root use the mount too, besides the user mounting (FUSE's allow_root; access still "
        "checked against each file's mode). Not with --allow-other.",
        DAEMON,
        is_flag=True,
    ),
    MountOption("read_only", "Mount read-only: every change fails with EROFS.", DAEMON, is_flag=True),
    MountOption(
        "background",
        "Detach once the mount is ready; the exit code says whether it is (what fstab wants).",
        LAUNCH,
        is_flag=True,
    ),
    MountOption(
        "log_level",
        "How much the daemon logs; debug adds a line per request to the store (operation, key, "
        "status, bytes, ms, attempt) [default: the global --log-level, warning].",
        LAUNCH,
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
    ),
    MountOption(
        "log_file",
        "Append the daemon's log to PATH, each line with its ISO-8601 time, instead of stderr "
        "(or syslog, in the background). A file moved away (logrotate) is let go at the next "
        "line, which starts a new file at PATH.",
        LAUNCH,
        type=click.Path(dir_okay=False),
        metavar="PATH",
    ),
    MountOption(
        "unmount_timeout",
        "Seconds unmounting waits for the store before leaving the rest for the next mount.",
        DAEMON,
        type=click.FloatRange(min=0),
        default=300.0,
        show_default=True,
    ),
    MountOption(
        "upload_workers",
        "Files uploaded at the same time (the copies of renamed files run beside them).",
        SETTINGS,
        type=click.IntRange(min=1),
        default=4,
        show_default=True,
    ),
    MountOption(
        "io_timeout",
        "Seconds a read or lookup waits for an unreachable store before failing with EIO.",
        SETTINGS,
        type=click.FloatRange(min=0.1),
        default=30.0,
        show_default=True,
    ),
    MountOption(
        "metrics_addr",
        "Serve Prometheus metrics (store requests, kernel requests, dirty data, cache, conflicts) "
        "over HTTP at this address; a port alone listens on 127.0.0.1 only. Any host may be "
        "given (0.0.0.0: every interface): whoever reaches it reads the metrics, which name the "
        "mount point and the store. The mount does not start when the address cannot be used.",
        LAUNCH,
        type=Address(),
        metavar="[HOST:]PORT",
    ),
    MountOption(
        "faults",
        "For chaos testing: inject faults into every store call, e.g. '*:error=0.2;put*:latency=0.1' "
        "(see docs/stores.md).",
        LAUNCH,
        metavar="SPEC",
    ),
)

BY_NAME: Mapping[str, MountOption] = {option.name: option for option in MOUNT_OPTIONS}

#: Options that cannot be given together, and why.
EXCLUSIVE: tuple[tuple[str, str, str], ...] = (
    ("allow_other", "allow_root", "allow_other lets every user in, root included"),
)


def conflict(values: Mapping[str, Any]) -> str | None:
    """Why the options among `values` (by name) cannot be given together, or None."""
    for first, second, why in EXCLUSIVE:
        if values.get(first) and values.get(second):
            return f"{BY_NAME[first].flag} and {BY_NAME[second].flag} exclude each other ({why}): give one"
    return None


def routed(values: Mapping[str, Any], goes_to: str) -> dict[str, Any]:
    """The options among `values` (by name) that go to `goes_to`, those not set left out."""
    return {
        option.name: values[option.name]
        for option in MOUNT_OPTIONS
        if option.goes_to == goes_to and values.get(option.name) is not None
    }


def driver_options(url: str | None) -> Mapping[str, Any] | None:
    """The driver options (by name) of the store `url` names, or None when no driver can
    be found for it (no URL, not a URL, an unknown scheme, a driver that cannot load)."""
    from .stores.errors import InvalidStoreURL
    from .stores.registry import available_schemes, load_driver

    if not url or "://" not in url:
        return None
    scheme = url.partition("://")[0].lower()
    target = available_schemes().get(scheme)
    if target is None:
        return None
    try:
        return load_driver(scheme, target).options
    except InvalidStoreURL:
        return None

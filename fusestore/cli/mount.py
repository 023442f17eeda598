"""`fusestore mount`: its options, `--config` and `-o`, checked here; the mount itself is
`launch`'s."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from ..conflicts import DEFAULT_TEMPLATE, ConflictNames
from ..stores.links import parse_link
from .common import LOG_LEVELS, fail, with_s3_options


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
    name = "octal"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return int(str(value), 8)
        except ValueError:
            self.fail(f"{value!r} is not an octal mode like 022", param, ctx)


def _load_config(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Eager: options from `--config FILE` and `-o` become the command's defaults (so the
    command line wins), each checked by its option's type now, with a one-line error."""
    if value is None or ctx.resilient_parsing:
        return value
    from .. import config

    sources = ctx.meta.setdefault("fusestore.sources", {})
    try:
        if param.name == "config":
            sources["config"] = (f"config file {value}", config.load_file(value))
        else:
            sources["o"] = ("-o", config.parse_mount_options(",".join(value)))
    except config.ConfigError as exc:
        fail(str(exc))
    params = {p.name: p for p in ctx.command.params if p.name not in ("config", "mount_options")}
    merged: dict[str, Any] = {}
    for source in ("config", "o"):
        if source not in sources:
            continue
        where, options = sources[source]
        try:
            config.check_keys(options, {name for name in params if name}, where)
        except config.ConfigError as exc:
            fail(str(exc))
        for key, raw in options.items():
            try:
                merged[key] = params[key].type_cast_value(ctx, raw)
            except click.BadParameter as exc:
                fail(f"{where}: {key} = {raw!r}: {exc.message}")
    ctx.default_map = {**(ctx.default_map or {}), **merged}
    return value


def _check_links(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    for spec in value:
        try:
            parse_link(spec)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def _check_conflict_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        ConflictNames(value, host="host")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@click.command("mount")
@click.argument("url", required=False)
@click.argument("mountpoint", required=False)
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    help="TOML file of options by their long names (url, mountpoint, cache_size, ...); "
    "the command line wins.",
)
@click.option(
    "-o",
    "mount_options",
    multiple=True,
    metavar="OPT[=VAL],...",
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    help="Options in mount(8) style: -o endpoint_url=http://…,cache_size=10G,ro,allow_other "
    "(_netdev, noauto and other mount(8) options are ignored).",
)
@with_s3_options
@click.option(
    "--cache-dir",
    type=click.Path(),
    help="Cache directory [default: one per store under "
    "$XDG_CACHE_HOME/fusestore, or /var/cache/fusestore for root].",
)
@click.option(
    "--cache-size",
    type=ByteSize(),
    default="10G",
    show_default=True,
    help="Clean data kept in the cache before the least recently used is evicted.",
)
@click.option(
    "--dirty-limit",
    type=ByteSize(),
    default="2G",
    show_default=True,
    help="Changed data not yet uploaded; writers wait when it is reached.",
)
@click.option(
    "--writeback-delay",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Seconds after a file's last write or close before it is uploaded.",
)
@click.option(
    "--upload-at-close",
    type=ByteSize(),
    default="16M",
    show_default=True,
    help="A new file at least this big is uploaded as soon as it is closed, without the "
    "write-back delay (0: never).",
)
@click.option(
    "--metadata-ttl",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds what a listing (or HEAD) showed is trusted before the store is asked again: "
    "other clients' changes show up after at most this long.",
)
@click.option(
    "--key-prefix",
    metavar="START",
    help="A view: show (and let be made) only the names at the top of the store that begin with "
    "START, e.g. logs- (the store option key_prefix).",
)
@click.option(
    "--link",
    "link",
    multiple=True,
    metavar="PATH=URL",
    callback=_check_links,
    help="Show another store read-only at PATH of the mount, e.g. /datasets=s3://public-bucket/prefix "
    "(repeatable; in a config file, a [links] table). Its endpoint, region and profile default to the "
    "mount's own.",
)
@click.option(
    "--conflict-name",
    default=DEFAULT_TEMPLATE,
    show_default=True,
    callback=_check_conflict_name,
    help="How the copy of a change another client beat to the store is named, next to the file: "
    "{stem} and {time} are required, {ext} and {host} optional.",
)
@click.option(
    "--fsync",
    type=click.Choice(["local", "remote"]),
    default="local",
    show_default=True,
    help="What fsync waits for: the change safe on this machine's disk (local), or in the store (remote).",
)
@click.option(
    "--exact-attrs",
    is_flag=True,
    help="Read each object's stored mode, owner, mtime and symlink flag on its first lookup "
    "(one HEAD per object). Without it only objects of up to 4095 bytes (possible symlinks) "
    "are read so; others show the listing's attributes until the file is changed.",
)
@click.option("--uid", type=int, help="Owner of objects that carry none [default: you].")
@click.option("--gid", type=int, help="Group of objects that carry none [default: your group].")
@click.option(
    "--umask",
    type=Octal(),
    default="022",
    show_default=True,
    help="Mode bits cleared for objects and directories that carry no mode.",
)
@click.option(
    "--allow-other",
    is_flag=True,
    help="Let other users than the one mounting use the mount (their access is still checked "
    "against each file's mode).",
)
@click.option("--read-only", is_flag=True, help="Mount read-only: every change fails with EROFS.")
@click.option(
    "--background",
    is_flag=True,
    help="Detach once the mount is ready; the exit code says whether it is (what fstab wants).",
)
@click.option(
    "--log-level",
    "log_level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    help="How much the daemon logs [default: the global --log-level, warning].",
)
@click.option(
    "--unmount-timeout",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="Seconds unmounting waits for the store before leaving the rest for the next mount.",
)
@click.option(
    "--upload-workers",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Files uploaded at the same time.",
)
@click.option(
    "--io-timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds a read or lookup waits for an unreachable store before failing with EIO.",
)
@click.option(
    "--faults",
    metavar="SPEC",
    help="For chaos testing: inject faults into every store call, e.g. '*:error=0.2;put*:latency=0.1' "
    "(see docs/stores.md).",
)
def mount_command(url: str | None, mountpoint: str | None, **options: Any) -> None:
    """Mount the store at URL on MOUNTPOINT, in the foreground until unmounted.

    Ctrl-C, SIGTERM, `fusestore umount` and `fusermount3 -u` all upload every change
    first; the exit code is 0 once the store holds everything.

    \b
    Examples:
      fusestore mount s3://my-bucket/photos ~/photos
      fusestore mount s3://demo ./mnt --endpoint-url http://127.0.0.1:9000
      fusestore mount --config /etc/fusestore/photos.toml
    """
    from ..launch import MountRequest, start_mount

    if not url:
        fail(
            "not a store URL: '' (none given); expected SCHEME://…, e.g. s3://BUCKET, "
            'as the first argument or as url = "…" in --config'
        )
    if mountpoint is None:
        fail('no mountpoint: give it as the second argument, or as mountpoint = "…" in --config')
    log_level = options.pop("log_level")
    if log_level:
        logging.getLogger("fusestore").setLevel(log_level.upper())
    sys.exit(start_mount(MountRequest(url, mountpoint, options)))

"""`fusestore mount`: its options, `--config` and `-o`, checked here; the mount itself is
`launch`'s."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from ..mountoptions import MOUNT_OPTIONS, MountOption, conflict, driver_options
from .common import fail


class MountCommand(click.Command):
    """`fusestore mount`, which learns the store URL before its eager options are
    checked: `-o` and `--config` may hold options of that URL's driver."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            opts, _, _ = self.make_parser(ctx).parse_args(args=list(args))
        except click.UsageError:
            opts = {}  # reported by the real parse below
        url = opts.get("url")
        ctx.meta["fusestore.url"] = url if isinstance(url, str) else _config_url(opts.get("config"))
        return super().parse_args(ctx, args)


def _config_url(path: Any) -> str | None:
    from .. import config

    if not isinstance(path, str):
        return None
    try:
        url = config.load_file(path).get("url")
    except config.ConfigError:
        return None  # reported when --config is checked
    return url if isinstance(url, str) else None


def _load_config(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Eager: options from `--config FILE` and `-o` become the command's defaults (so the
    command line wins), each checked by its option's type now, with a one-line error.
    Options of the URL's store driver are set aside for the store, which checks them
    when it is opened, as it checks the URL's query."""
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
    driver = driver_options(ctx.meta.get("fusestore.url")) or {}
    merged: dict[str, Any] = {}
    store: dict[str, Any] = {}
    for source in ("config", "o"):
        if source not in sources:
            continue
        where, options = sources[source]
        try:
            config.check_keys(options, {name for name in params if name} | set(driver), where)
        except config.ConfigError as exc:
            fail(str(exc))
        for key, raw in options.items():
            if key not in params:  # the driver's own: checked when the store is opened
                store[key] = raw
                continue
            if params[key].multiple and isinstance(raw, str):  # -o link=PATH=URL: one of them
                raw = [raw]
            try:
                merged[key] = params[key].type_cast_value(ctx, raw)
            except click.BadParameter as exc:
                fail(f"{where}: {key} = {raw!r}: {exc.message}")
    ctx.default_map = {**(ctx.default_map or {}), **merged}
    ctx.meta["fusestore.store_options"] = store
    return value


def _checked(option: MountOption) -> Any:
    """The click callback running `option.check` (a ValueError becomes a usage error)."""
    check = option.check
    if check is None:
        return None

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            check(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        return value

    return callback


def _mount_options(func: Any) -> Any:
    for option in reversed(MOUNT_OPTIONS):
        func = option.click_option(_checked(option))(func)
    return func


@click.command("mount", cls=MountCommand)
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
@_mount_options
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
    from ..service.launch import MountRequest, start_mount
    from .process import setup_daemon_process

    if not url:
        fail(
            "not a store URL: '' (none given); expected SCHEME://…, e.g. s3://BUCKET, "
            'as the first argument or as url = "…" in --config'
        )
    if mountpoint is None:
        fail('no mountpoint: give it as the second argument, or as mountpoint = "…" in --config')
    reason = conflict(options)
    if reason:
        fail(reason)
    log_level = options.pop("log_level")
    if log_level:
        logging.getLogger("fusestore").setLevel(log_level.upper())
    log_file = options.get("log_file")
    if log_file:
        from ..service.logs import log_to_file

        try:
            log_to_file(log_file)
        except OSError as exc:
            fail(f"--log-file {log_file}: {exc.strerror or exc}")
    store_options = click.get_current_context().meta.get("fusestore.store_options", {})
    setup_daemon_process()
    sys.exit(start_mount(MountRequest(url, mountpoint, options, store_options)))

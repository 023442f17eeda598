"""The `fusestore` command line."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from typing import Any, NoReturn

import click

from . import __version__
from .stores import InvalidStoreURL, StoreError, available_schemes, open_store
from .stores.registry import load_driver

LOG_LEVELS = ["debug", "info", "warning", "error"]


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit 2: the convention for every bad input."""
    click.echo(f"fusestore: error: {message}", err=True)
    sys.exit(2)


def store_options(endpoint_url: str | None, region: str | None, profile: str | None) -> dict[str, Any]:
    """The S3 command-line options that were given, as driver options."""
    given = {"endpoint_url": endpoint_url, "region": region, "profile": profile}
    return {name: value for name, value in given.items() if value is not None}


s3_options = [
    click.option("--endpoint-url", help="S3 endpoint of a non-AWS server (MinIO, Ceph, SeaweedFS)."),
    click.option("--region", help="S3 region (default: from the AWS config, else us-east-1)."),
    click.option("--profile", help="Profile in ~/.aws/config and ~/.aws/credentials."),
]


def with_s3_options(func: Any) -> Any:
    for option in reversed(s3_options):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fusestore")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="warning",
    envvar="FUSESTORE_LOG_LEVEL",
    show_default=True,
    help="How much to log (to stderr).",
)
def main(log_level: str) -> None:
    """Mount an object store (S3, MinIO, Ceph, SeaweedFS, a directory) as a directory."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The level applies to fusestore's own loggers: botocore's debug output is a flood.
    logging.getLogger("fusestore").setLevel(log_level.upper())


@main.command("stores")
def stores_command() -> None:
    """List the store URL schemes this installation can open, with their options."""
    for scheme, target in available_schemes().items():
        try:
            cls = load_driver(scheme, target)
        except InvalidStoreURL as exc:
            click.echo(f"{scheme}://  (unavailable: {exc})")
            continue
        summary = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        click.echo(summary if summary.startswith("`") else f"{scheme}://  {summary}")
        for name, option in cls.options.items():
            default = "" if option.default is None else f" [default: {option.render(option.default)}]"
            click.echo(f"    {name}: {option.help}{default}")


@main.command("check")
@click.argument("url")
@with_s3_options
def check_command(url: str, endpoint_url: str | None, region: str | None, profile: str | None) -> None:
    """Check that URL's store exists and answers with the credentials at hand.

    \b
    Examples:
      fusestore check s3://my-bucket/photos
      fusestore check s3://demo --endpoint-url http://127.0.0.1:9000
      fusestore check file:///srv/objects
    """
    try:
        store = open_store(url, **store_options(endpoint_url, region, profile))
        store.probe()
    except (InvalidStoreURL, StoreError) as exc:
        fail(str(exc))
    click.echo(f"ok: {store.to_url()} answers")
    store.close()


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


@main.command("mount")
@click.argument("url")
@click.argument("mountpoint")
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
    "--metadata-ttl",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds a directory listing is trusted before the store is asked again.",
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
    "--fsync",
    "fsync_mode",
    type=click.Choice(["local", "remote"]),
    default="local",
    show_default=True,
    help="What fsync waits for: the change safe on this machine's disk (local), or in the store (remote).",
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
@click.option(
    "--allow-other",
    is_flag=True,
    help="Let other users than the one mounting use the mount (their access is still checked "
    "against each file's mode).",
)
def mount_command(
    url: str,
    mountpoint: str,
    endpoint_url: str | None,
    region: str | None,
    profile: str | None,
    cache_dir: str | None,
    cache_size: int,
    dirty_limit: int,
    writeback_delay: float,
    metadata_ttl: float,
    uid: int | None,
    gid: int | None,
    umask: int,
    unmount_timeout: float,
    upload_workers: int,
    fsync_mode: str,
    io_timeout: float,
    faults: str | None,
    allow_other: bool,
) -> None:
    """Mount the store at URL on MOUNTPOINT, in the foreground until unmounted.

    Ctrl-C, SIGTERM, `fusestore umount` and `fusermount3 -u` all upload every change
    first; the exit code is 0 once the store holds everything.

    \b
    Examples:
      fusestore mount s3://my-bucket/photos ~/photos
      fusestore mount s3://demo ./mnt --endpoint-url http://127.0.0.1:9000
    """
    from .core import MountSettings
    from .daemon import Daemon, DaemonOptions, SetupError

    settings = MountSettings(
        uid=os.getuid() if uid is None else uid,
        gid=os.getgid() if gid is None else gid,
        umask=umask,
        metadata_ttl=metadata_ttl,
        writeback_delay=writeback_delay,
        cache_size=cache_size,
        dirty_limit=dirty_limit,
        upload_workers=upload_workers,
        fsync=fsync_mode,
        io_timeout=io_timeout,
    )
    try:
        store = open_store(url, **store_options(endpoint_url, region, profile))
        if faults:
            from .stores.faulty import FaultyStore

            store = FaultyStore(store, faults)
            logging.getLogger("fusestore").warning("injecting faults into every store call: %s", faults)
        daemon = Daemon(
            store,
            mountpoint,
            settings,
            cache_dir,
            DaemonOptions(unmount_timeout=unmount_timeout, allow_other=allow_other),
        )
        code = daemon.run()
    except (InvalidStoreURL, StoreError, SetupError) as exc:
        fail(str(exc))
    sys.exit(code)


@main.command("umount")
@click.argument("mountpoint", type=click.Path())
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Give up waiting after this many seconds (the daemon keeps syncing).",
)
def umount_command(mountpoint: str, timeout: float | None) -> None:
    """Upload every change, then unmount MOUNTPOINT; waits until the daemon has exited."""
    from . import mounts

    mountpoint = os.path.realpath(mountpoint)
    entry = mounts.registered(mountpoint)
    pid = entry.get("pid") if entry else None
    ours = mounts.mount_type(mountpoint) == "fuse.fusestore"  # never detach another file system
    if not pid or not _alive(pid) or not ours:
        if ours:
            mounts.lazy_unmount(mountpoint)
            click.echo(f"fusestore: {mountpoint} unmounted (no live daemon was registered for it)", err=True)
            return
        fail(f"{mountpoint} is not a fusestore mount")
    os.kill(pid, signal.SIGTERM)
    click.echo(f"fusestore: uploading pending changes of {mountpoint}, then unmounting…", err=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    while _alive(pid):
        if deadline is not None and time.monotonic() > deadline:
            fail(f"still syncing after {timeout:g}s; the daemon (pid {pid}) carries on")
        time.sleep(0.1)
    result = (mounts.registered(mountpoint) or {}).get("exit_code")
    if result not in (0, None):
        fail(f"{mountpoint} was unmounted with changes not yet in the store; they go up at the next mount")
    click.echo(f"fusestore: {mountpoint} unmounted; the store holds every change", err=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return stat_file.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False

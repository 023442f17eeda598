"""The Python API: mount a store from a program, use it as a path, sync, unmount.

    with fusestore.mount("s3://bucket/prefix", "/mnt/x", sync_mode=SyncMode.SYNC_ALL,
                         endpoint_url="http://127.0.0.1:9000") as m:
        (m.path / "hello.txt").write_bytes(b"hi")
        m.sync_all()          # returns when everything is in the store
    # leaving the block: sync_all() (with SYNC_ALL), then unlink(): unmounted

It drives the same daemon as the command line, as a subprocess (`fusestore mount
--background`): the mount outlives no one by accident (leaving the block unmounts, an
exception in the block included), a crash of the program leaves a normal mount that
`fusestore umount` ends, and the daemon's own threads and signals never mix with the
program's. `**options` are the long options of `fusestore mount` with underscores.
"""

from __future__ import annotations

import contextlib
import difflib
import enum
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import click

from .mountoptions import BY_NAME, Octal, driver_options
from .service import mounts
from .service.control import ControlClient, ControlError


class SyncMode(enum.Enum):
    """What leaving the `with` block does before unmounting."""

    #: upload everything first (the default): the store holds every change afterwards
    SYNC_ALL = "sync_all"
    #: unmount at once; what is not uploaded yet stays in the cache's journal and goes up
    #: at the next mount of the same store with the same cache
    NONE = "none"


class MountError(RuntimeError):
    """The mount could not be made, or the daemon could not do what was asked."""


def _unknown(name: str, driver: Mapping[str, Any] | None) -> TypeError:
    """The error of a Python call given a keyword it does not take."""
    near = difflib.get_close_matches(name, [*BY_NAME, *(driver or {})], n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return TypeError(f"mount() got an unknown option {name!r}{hint}")


def _check(name: str, value: Any) -> None:
    """The value of mount option `name` checked as the command line would check it,
    refused in Python's terms: TypeError for a flag that is not a bool, ValueError for a
    value the option cannot take (named as the keyword was written)."""
    option = BY_NAME[name]
    if value is None:
        return
    if option.is_flag:
        if not isinstance(value, bool):
            raise TypeError(f"{name} is a flag: give True or False, not {value!r}")
        return
    items: list[Any]
    if isinstance(value, dict):  # link={"/datasets": "s3://…"}
        items = [f"{key}={item}" for key, item in value.items()]
    elif option.multiple and isinstance(value, list | tuple):
        items = list(value)
    else:
        items = [value]
    kind = click.types.convert_type(option.type, option.default)
    try:
        converted = [kind.convert(item, None, None) for item in items]
        if option.check is not None:
            option.check(tuple(converted) if option.multiple else converted[0])
    except click.BadParameter as exc:
        raise ValueError(f"{name}={value!r}: {exc.message}") from None
    except ValueError as exc:
        raise ValueError(f"{name}={value!r}: {exc}") from None


def _arguments(url: str, options: dict[str, Any]) -> list[str]:
    """The command-line arguments for `options`: a mount option as its flag, an option of
    the store's driver (`path_style=True`) as `-o`. A keyword that is no option raises
    TypeError, a bad value ValueError, before anything runs."""
    args: list[str] = []
    driver: Mapping[str, Any] | None = None
    for name, value in options.items():
        if name in BY_NAME:
            _check(name, value)
            flag = BY_NAME[name].flag
            if isinstance(BY_NAME[name].type, Octal) and type(value) is int:
                value = f"{value:o}"  # umask=0o027: the command line reads modes in octal
        else:
            driver = driver_options(url) if driver is None else driver
            if driver and name in driver:
                if value is not None:
                    args += ["-o", f"{name}={str(value).lower() if isinstance(value, bool) else value}"]
                continue
            raise _unknown(name, driver)
        if value is True:
            args.append(flag)
        elif isinstance(value, dict):  # link={"/datasets": "s3://…"}
            for key, item in value.items():
                args += [flag, f"{key}={item}"]
        elif isinstance(value, list | tuple):
            for item in value:
                args += [flag, str(item)]
        elif value is not False and value is not None:
            args += [flag, str(value)]
    return args


class Mount:
    """A live mount made by `mount()`. Methods block (they wait for the daemon)."""

    def __init__(self, url: str, mountpoint: str, sync_mode: SyncMode, log_file: str | None) -> None:
        self.url = url
        self.path = Path(os.path.realpath(mountpoint))
        self.sync_mode = sync_mode
        self.log_file = log_file
        self.pid: int | None = None
        self._control: ControlClient | None = None

    def _start(self, options: dict[str, Any]) -> Self:
        command = [sys.executable, "-m", "fusestore", "mount", "--background", self.url, str(self.path)]
        # The log file is the command line's --log-file (the daemon's own, reopened after
        # logrotate); what the daemon says before it is ready is read only for the error.
        command += _arguments(self.url, {**options, "log_file": self.log_file})
        with tempfile.TemporaryFile() as scratch:
            done = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=scratch, stderr=scratch, check=False
            )
            if done.returncode != 0:
                scratch.seek(0)
                lines = scratch.read().decode(errors="replace").strip().splitlines()
                reason = lines[-1] if lines else f"exit code {done.returncode}"
                raise MountError(reason.removeprefix("fusestore: error: "))
        entry = mounts.registered(str(self.path)) or {}
        if not entry.get("control"):
            raise MountError(f"the daemon of {self.path} did not register")
        self.pid = entry["pid"]
        self._control = ControlClient(entry["control"])
        return self

    @property
    def mounted(self) -> bool:
        return self._control is not None

    def _client(self) -> ControlClient:
        if self._control is None:
            raise MountError(f"{self.path} is not mounted any more")
        return self._control

    def status(self) -> dict[str, Any]:
        """What `fusestore status --json` shows for this mount."""
        try:
            return self._client().call("status")
        except ControlError as exc:
            raise MountError(str(exc)) from None

    def sync_all(self, timeout: float | None = None) -> None:
        """Return once the store holds every change made so far; MountError after
        `timeout` seconds (the uploads go on), or when some item cannot be uploaded (a
        name the store refuses: `status()` names it)."""
        try:
            ControlClient(self._client().path, timeout=timeout).flush()
        except ControlError as exc:
            raise MountError(str(exc)) from None

    def pin(self, path: str, on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Fetch `path` (inside the mount, or relative to it; a file or a folder) into the
        cache and keep it there (see `fusestore pin`); returns the pin's result, whose
        `errors` name files that could not be fetched. MountError when refused."""
        try:
            final = ControlClient(self._client().path, timeout=None).follow(
                "pin", on_progress, path=self._relative(path)
            )
        except ControlError as exc:
            raise MountError(str(exc)) from None
        if final is None:
            raise MountError(f"{self.path} stopped before the pin was done")
        result: dict[str, Any] = final["pin"]
        return result

    def link(self, path: str, url: str) -> None:
        """Show the store at `url` read-only at `path` of this mount (`--link`), from now
        on; MountError when it does not answer or the path is taken."""
        try:
            self._client().call("link", path=path, url=url)
        except ControlError as exc:
            raise MountError(str(exc)) from None

    def unlink_store(self, path: str) -> None:
        """Stop showing the store linked at `path`."""
        try:
            self._client().call("unlink_store", path=path)
        except ControlError as exc:
            raise MountError(str(exc)) from None

    def unpin(self, path: str) -> None:
        """Let a pinned path's data be evicted again."""
        try:
            self._client().call("unpin", path=self._relative(path))
        except ControlError as exc:
            raise MountError(str(exc)) from None

    def _relative(self, path: str) -> str:
        full = Path(path) if os.path.isabs(path) else self.path / path
        try:
            return str(Path(os.path.abspath(full)).relative_to(self.path))
        except ValueError:
            raise MountError(f"{path} is not inside {self.path}") from None

    def unlink(self, sync: bool = True) -> None:
        """Unmount (after uploading everything unless `sync` is False). Safe to call twice."""
        if self._control is None:
            return
        client = ControlClient(self._control.path, timeout=None)
        self._control = None
        with contextlib.suppress(ControlError):  # gone already, or going: wait for it below
            client.follow("unmount", sync=sync)
        if self.pid is not None:
            mounts.wait_exit(self.pid)
        entry = mounts.registered(str(self.path)) or {}
        if sync and entry.get("exit_code") not in (0, None):
            raise MountError(
                f"{self.path} was unmounted with changes not yet in the store; they go up at the next mount"
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.sync_mode is SyncMode.SYNC_ALL and self.mounted:
                self.sync_all()
        finally:
            self.unlink(sync=self.sync_mode is SyncMode.SYNC_ALL)


def mount(
    url: str,
    mountpoint: str | os.PathLike[str],
    sync_mode: SyncMode = SyncMode.SYNC_ALL,
    *,
    log_file: str | None = None,
    **options: Any,
) -> Mount:
    """Mount `url` on `mountpoint` and return once it is ready (MountError if it cannot
    be: the message is the one-line reason the command line would print).

    `options` are `fusestore mount`'s long options with underscores (`endpoint_url=`,
    `cache_dir=`, `writeback_delay=`, `read_only=True`, ...) and the options of the store's
    driver (`path_style=True`, as in the URL's query). The daemon's log goes to
    `log_file` when given (`--log-file`: timed lines, a new file after logrotate moves it).
    A keyword that is no option raises TypeError and a value the option cannot take
    ValueError, before anything starts, as with any Python call.
    """
    return Mount(url, os.fspath(mountpoint), sync_mode, log_file)._start(options)

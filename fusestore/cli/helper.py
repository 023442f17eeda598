"""`fusestore install-helper`: put mount(8)'s helper where mount(8) looks for it.

`mount -t fusestore` runs `/sbin/mount.fusestore` (util-linux searches only /sbin,
/sbin/fs.d and /sbin/fs, never PATH), while pip installs the `mount.fusestore` entry point
next to its interpreter (a virtualenv's `bin/`, `~/.local/bin`, ...). This writes a small
shell script there that runs this installation's helper module with this installation's
interpreter, by absolute path:

    exec /path/to/venv/bin/python -P -m fusestore.cli.fstab "$@"

A script rather than a symlink to the entry point, because:

- upgrading fusestore in place (`pip install -U`) or rebuilding the virtualenv at the
  same path keeps both working, but the script names only the interpreter and a module,
  not where this installation's scripts directory happens to be (user installs, editable
  installs and distributions put it in different places);
- when the installation is moved or removed, a symlink dangles and mount(8) reports only
  `unknown filesystem type 'fusestore'`; the script says which installation is gone and
  how to point the helper at another one;
- it carries a marker line, so this command recognises its own file: running it again
  rewrites it (idempotent), and it never overwrites or removes a file it did not write.

No layout survives moving a virtualenv (its own scripts break too): run the command again
from the new place.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from .common import fail

#: The line that marks a helper this command wrote (and may therefore replace or remove).
MARKER = "# written by `fusestore install-helper`"


def helper_path(prefix: str) -> Path:
    """Where mount(8) looks for the helper, under `prefix` (`/` for the running system)."""
    return Path(prefix) / "sbin" / "mount.fusestore"


def helper_script(python: str) -> str:
    """The helper's text: run `python`'s fusestore, or say clearly that it is gone."""
    quoted = shlex.quote(python)
    return f"""#!/bin/sh
# mount(8)'s helper for `mount -t fusestore` and fstab lines of type fusestore.
{MARKER}: it runs the fusestore of this interpreter.
# To use another installation, run `fusestore install-helper` from that one.
if [ ! -x {quoted} ]; then
    echo "mount.fusestore: the fusestore installation of" {quoted} "is gone;" \\
        "run 'fusestore install-helper' from the installation to use" >&2
    exit 1
fi
exec {quoted} -P -m fusestore.cli.fstab "$@"
"""


def is_ours(path: Path) -> bool:
    """Whether `path` is a regular file this command wrote (never follows a symlink)."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, "rb") as f:
            return MARKER.encode() in f.read(4096)
    except OSError:
        return False


def install(prefix: str, python: str) -> tuple[Path, bool]:
    """Write the helper under `prefix`; (its path, whether anything changed). ValueError
    when another file is in the way."""
    target = helper_path(prefix)
    text = helper_script(python)
    if target.exists() or target.is_symlink():
        if not is_ours(target):
            raise ValueError(
                f"{target} exists and was not written by fusestore install-helper; "
                "remove it first if it is an old fusestore helper"
            )
        if target.read_text() == text and os.access(target, os.X_OK):
            return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed over: mount(8) never runs a half-written helper.
    scratch = target.with_name(f".{target.name}.{os.getpid()}")
    try:
        scratch.write_text(text)
        scratch.chmod(0o755)
        os.replace(scratch, target)
    finally:
        scratch.unlink(missing_ok=True)
    return target, True


def remove(prefix: str) -> Path | None:
    """Remove the helper under `prefix` if this command wrote it; its path, or None when
    there was none. ValueError for a file it did not write."""
    target = helper_path(prefix)
    if not (target.exists() or target.is_symlink()):
        return None
    if not is_ours(target):
        raise ValueError(f"{target} was not written by fusestore install-helper; left as it is")
    target.unlink()
    return target


@click.command("install-helper")
@click.option(
    "--prefix",
    default="/",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Install into PREFIX/sbin (mount(8) looks in /sbin; on merged-/usr systems that is /usr/sbin).",
)
@click.option("--remove", "remove_it", is_flag=True, help="Remove the helper this command installed.")
def install_helper_command(prefix: str, remove_it: bool) -> None:
    """Install /sbin/mount.fusestore, so that `mount -t fusestore` and fstab lines work.

    The helper runs this installation's fusestore with its interpreter. Running the
    command again updates it; it never replaces a file it did not write. Needs root.
    """
    if os.geteuid() != 0:
        where = helper_path(prefix)
        fail(f"install-helper writes {where} and must run as root (sudo fusestore install-helper)")
    try:
        if remove_it:
            gone = remove(prefix)
            click.echo(f"removed {gone}" if gone else f"no helper at {helper_path(prefix)}")
            return
        # The interpreter as invoked, not resolved: a virtualenv's python is a symlink,
        # and only through it does the interpreter find the virtualenv's packages.
        target, changed = install(prefix, os.path.abspath(sys.executable))
    except (ValueError, OSError) as exc:
        fail(str(exc))
    click.echo(f"{'installed' if changed else 'already installed:'} {target} (runs {sys.executable})")

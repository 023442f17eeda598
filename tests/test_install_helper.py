"""`fusestore install-helper`: mount(8)'s helper written where mount(8) looks, into a
temporary prefix here (the end-to-end `mount -t fusestore` is in tests/mount)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fusestore.cli import main
from fusestore.cli.helper import MARKER, helper_path

pytestmark = pytest.mark.timeout(60)


def install_helper(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusestore", "install-helper", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def this_checkout() -> dict[str, str]:
    """An environment in which the interpreter imports this fusestore (the helper runs
    `python -P`, which leaves the working directory out of the module path)."""
    import fusestore

    return {**os.environ, "PYTHONPATH": str(Path(fusestore.__file__).parent.parent)}


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="install-helper needs root")


@needs_root
def test_the_helper_runs_this_installation_and_a_second_install_changes_nothing(tmp_path: Path) -> None:
    done = install_helper("--prefix", str(tmp_path))
    assert done.returncode == 0, done.stderr
    helper = tmp_path / "sbin" / "mount.fusestore"
    assert helper == helper_path(str(tmp_path))
    text = helper.read_text()
    assert MARKER in text and f"exec {sys.executable} -P -m fusestore.cli.fstab" in text
    assert helper.stat().st_mode & 0o777 == 0o755
    assert done.stdout.startswith(f"installed {helper}")
    before = helper.stat()

    again = install_helper("--prefix", str(tmp_path))
    assert again.returncode == 0 and again.stdout.startswith("already installed:"), again.stderr
    assert helper.stat().st_ino == before.st_ino and helper.stat().st_mtime_ns == before.st_mtime_ns

    # It runs fusestore's own mount helper: its usage line for wrong arguments.
    ran = subprocess.run(
        [str(helper), "only-one"], capture_output=True, text=True, timeout=60, env=this_checkout()
    )
    assert ran.returncode == 2 and ran.stderr.startswith("usage: mount.fusestore"), ran.stderr


@needs_root
def test_an_older_helper_of_its_own_is_replaced_and_a_foreign_file_never(tmp_path: Path) -> None:
    helper = tmp_path / "sbin" / "mount.fusestore"
    helper.parent.mkdir()
    helper.write_text(f'#!/bin/sh\n{MARKER}\nexec /gone/python -P -m fusestore.cli.fstab "$@"\n')
    assert install_helper("--prefix", str(tmp_path)).returncode == 0
    assert sys.executable in helper.read_text()

    helper.unlink()
    helper.write_text("#!/bin/sh\necho someone else's\n")
    refused = install_helper("--prefix", str(tmp_path))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"fusestore: error: {helper} exists and was not written by fusestore install-helper; "
        "remove it first if it is an old fusestore helper"
    ]
    assert helper.read_text() == "#!/bin/sh\necho someone else's\n"
    assert install_helper("--prefix", str(tmp_path), "--remove").returncode == 2
    assert helper.exists()

    helper.unlink()
    helper.symlink_to("/bin/true")  # a symlink, even to something harmless, is not ours
    assert install_helper("--prefix", str(tmp_path)).returncode == 2
    assert os.readlink(helper) == "/bin/true"


@needs_root
def test_remove_takes_away_only_its_own_helper(tmp_path: Path) -> None:
    assert install_helper("--prefix", str(tmp_path)).returncode == 0
    removed = install_helper("--prefix", str(tmp_path), "--remove")
    assert removed.returncode == 0 and removed.stdout.strip() == f"removed {helper_path(str(tmp_path))}"
    assert not helper_path(str(tmp_path)).exists()
    nothing = install_helper("--prefix", str(tmp_path), "--remove")
    assert nothing.returncode == 0 and nothing.stdout.startswith("no helper at")


def test_a_helper_whose_installation_is_gone_says_so(tmp_path: Path) -> None:
    from fusestore.cli.helper import helper_script

    helper = tmp_path / "mount.fusestore"
    helper.write_text(helper_script(str(tmp_path / "gone" / "python")))
    helper.chmod(0o755)
    ran = subprocess.run([str(helper), "s3://b", "/mnt/x"], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 1
    assert "installation of" in ran.stderr and "is gone" in ran.stderr and "install-helper" in ran.stderr


def test_it_refuses_clearly_when_not_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(main, ["install-helper", "--prefix", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"fusestore: error: install-helper writes {tmp_path}/sbin/mount.fusestore and must run as root "
        "(sudo fusestore install-helper)"
    ]
    assert not (tmp_path / "sbin").exists()

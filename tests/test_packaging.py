"""What a built wheel carries: the license, the classifiers, `py.typed`, both entry
points; and the manual page, written from the commands themselves."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fusestore.cli import main
from fusestore.cli.manpage import escape, render, walk

ROOT = Path(__file__).resolve().parent.parent


def build(source: Path, *command: str) -> None:
    """Run setuptools in `source` (a copy: nothing lands in the checkout), offline."""
    done = subprocess.run([sys.executable, *command], cwd=source, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.mark.timeout(300)
def test_the_package_carries_license_classifiers_types_and_entry_points(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "fusestore", source / "fusestore", ignore=shutil.ignore_patterns("__pycache__"))
    # The files a wheel installs (packages and their data) ...
    build(
        source, "-c", "from setuptools import setup; setup()", "-q", "build_py", "-d", str(tmp_path / "lib")
    )
    assert (tmp_path / "lib" / "fusestore" / "py.typed").exists(), "type checkers see the annotations"
    # ... and the source distribution with its metadata.
    build(source, "-c", f"import setuptools.build_meta as b; b.build_sdist({str(tmp_path)!r})")
    [sdist] = tmp_path.glob("fusestore-*.tar.gz")
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]

        def read(name: str) -> str:
            member = archive.extractfile(f"{top}/{name}")
            assert member is not None, name
            return member.read().decode()

        assert read("LICENSE").startswith("MIT License")
        assert read("fusestore/py.typed") == ""
        meta = read("PKG-INFO")
        scripts = read("fusestore.egg-info/entry_points.txt")
    assert "License-File: LICENSE" in meta
    for classifier in (
        "License :: OSI Approved :: MIT License",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3.11",
        "Topic :: System :: Filesystems",
        "Typing :: Typed",
    ):
        assert f"Classifier: {classifier}" in meta
    assert "Home-page" not in meta and "Project-URL" not in meta, "no invented addresses"
    assert "fusestore = fusestore.cli:run" in scripts
    assert "mount.fusestore = fusestore.cli.fstab:main" in scripts


def test_the_manual_page_names_every_command_and_option() -> None:
    page = render(main)
    commands = [words for words, _ in walk(main, []) if words]
    assert {" ".join(words) for words in commands} >= {
        "mount", "umount", "status", "flush", "check", "stores", "pin", "unpin",
        "cache", "cache list", "cache show", "cache clean", "cache recover", "install-helper", "man",
    }  # fmt: skip
    for words, command in walk(main, []):
        if words:
            assert f'.SS "fusestore {escape(" ".join(words))}"' in page, words
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                for flag in param.opts:
                    assert escape(flag) in page, (words, flag)
    assert page.startswith(".TH FUSESTORE 1 ")
    assert "\\fBmount \\-t fusestore\\fR" in page


@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("groff") is None, reason="no groff")
def test_the_manual_page_is_clean_troff() -> None:
    printed = CliRunner().invoke(main, ["man"], standalone_mode=False)
    assert printed.exit_code == 0, printed.output
    checked = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z"],
        input=printed.output,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
    shown = subprocess.run(
        ["groff", "-man", "-Tutf8", "-P-cbou"],
        input=printed.output,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    shown = shown.replace("\u2010", "-")  # groff's hyphen
    assert "fusestore install-helper" in shown and "--cache-size" in shown


def test_the_core_install_has_no_cloud_sdk_but_boto3() -> None:
    """Azure's and Google's SDKs are extras: the package's own requirements leave them
    out, and the command line and the other drivers never import them."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    assert "azure" not in core and "google" not in core
    assert project["optional-dependencies"]["azure"][0].startswith("azure-storage-blob")
    assert project["optional-dependencies"]["gcs"][0].startswith("google-cloud-storage")
    probe = (
        "import sys, tempfile\n"
        "from fusestore.cli import main\n"
        "from fusestore.stores import open_store\n"
        "open_store('s3://bucket'); open_store('memory://m'); open_store('file://' + tempfile.gettempdir())\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'azure', 'google'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"imported without an az:// or gs:// store: {done.stdout}"

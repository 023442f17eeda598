"""The file driver lists in O(page size): a whole listing costs time linear in the number
of entries, however small the pages, and keeps S3's rules while entries come and go; the
same whether its pages are built in this process or in its listing helper process."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fusestore.stores.file import FileStore
from fusestore.stores.file_listing import DirSnapshots
from fusestore.stores.memory import MemoryStore

WHERE = {"in this process": False, "in the helper process": True}


@pytest.fixture(params=list(WHERE))
def fs(request: pytest.FixtureRequest, root: Path) -> FileStore:
    """The store, its pages built here or in the helper process."""
    return FileStore(str(root), listing_process=WHERE[request.param])


@pytest.fixture
def local_fs(root: Path) -> FileStore:
    """The store, its pages built in this process: what it reads can be counted here."""
    return FileStore(str(root), listing_process=False)


class _Counts:
    """Directory entries read and attributes read, through wrappers of os.scandir and
    os.getxattr: a count of work that a loaded machine cannot change."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entries = 0
        self.xattrs = 0
        scandir, getxattr = os.scandir, os.getxattr
        counts = self

        class Scan:
            def __init__(self, path: Any) -> None:
                self._scan = scandir(path)

            def __enter__(self) -> Scan:
                return self

            def __exit__(self, *exc: object) -> None:
                self._scan.close()

            def close(self) -> None:
                self._scan.close()

            def __iter__(self) -> Iterator[os.DirEntry[str]]:
                for entry in self._scan:
                    counts.entries += 1
                    yield entry

        def counting_getxattr(*args: Any, **kwargs: Any) -> bytes:
            counts.xattrs += 1
            return getxattr(*args, **kwargs)

        monkeypatch.setattr(os, "scandir", Scan)
        monkeypatch.setattr(os, "getxattr", counting_getxattr)


def _fill(directory: Path, count: int, subdirs: int = 0) -> list[str]:
    """`count` plain files (and `subdirs` directories holding one file each); their keys."""
    directory.mkdir(parents=True, exist_ok=True)
    names = [f"f{i:06d}" for i in range(count)]
    for name in names:
        (directory / name).write_bytes(b"")
    for i in range(subdirs):
        (directory / f"d{i:04d}").mkdir()
        (directory / f"d{i:04d}" / "x").write_bytes(b"")
    return names


def _pages(fs: FileStore, prefix: str, delimiter: str | None, max_keys: int) -> tuple[list[str], int]:
    """Every name of a listing (objects and prefixes, in order) and the number of pages."""
    names: list[str] = []
    token = None
    pages = 0
    while True:
        page = fs.list(prefix, delimiter, token, max_keys)
        pages += 1
        names += sorted([o.key for o in page.objects] + page.prefixes)
        if page.next_token is None:
            return names, pages
        token = page.next_token


@pytest.mark.parametrize("delimiter", ["/", None])
def test_a_listing_in_small_pages_costs_linear_work(
    local_fs: FileStore, root: Path, monkeypatch: pytest.MonkeyPatch, delimiter: str | None
) -> None:
    fs = local_fs
    small, large = 300, 600
    _fill(root / "n", small, subdirs=small // 10)
    _fill(root / "2n", large, subdirs=large // 10)
    counts = _Counts(monkeypatch)
    cost = {}
    for name, size in (("n", small), ("2n", large)):
        counts.entries = counts.xattrs = 0
        names, pages = _pages(fs, f"{name}/", delimiter, 10)
        assert len(names) == size + size // 10
        assert names == sorted(names)
        assert pages >= size // 10
        cost[name] = (counts.entries, counts.xattrs)
        # Each entry is read from its directory a bounded number of times, and only the
        # entries of the pages returned (plus one look-ahead per page) have their
        # attributes read: never the whole directory per page.
        assert counts.entries <= 4 * len(names), (name, counts.entries)
        assert counts.xattrs <= 2 * len(names) + 2 * pages, (name, counts.xattrs)
    assert cost["2n"][0] <= 2.5 * cost["n"][0], cost
    assert cost["2n"][1] <= 2.5 * cost["n"][1], cost


@pytest.mark.parametrize("delimiter", ["/", None])
def test_entries_added_and_removed_during_a_listing_keep_s3_rules(
    fs: FileStore, root: Path, delimiter: str | None
) -> None:
    """Entries that exist throughout come exactly once, in order; entries added or removed
    meanwhile come at most once; nothing comes twice."""
    names = _fill(root / "dir", 400)
    steady = set(names[::2])
    churn = sorted(set(names) - steady)
    added: list[str] = []
    seen: list[str] = []
    token = None
    step = 0
    while True:
        page = fs.list("dir/", delimiter, token, 7)
        seen += [o.key for o in page.objects]
        # Meanwhile: remove some entries not yet listed and some already listed, and add
        # new ones before and after the listing's position.
        for name in churn[step * 3 : step * 3 + 3]:
            os.unlink(root / "dir" / name)
        for new in (f"a{step:04d}", f"f{step * 5:06d}x", f"z{step:04d}"):
            (root / "dir" / new).write_bytes(b"")
            added.append(new)
        step += 1
        if page.next_token is None:
            break
        token = page.next_token
    assert len(seen) == len(set(seen)), "a key came twice"
    assert seen == sorted(seen)
    listed = {key.removeprefix("dir/") for key in seen}
    assert steady <= listed, sorted(steady - listed)[:5]
    assert listed <= set(names) | set(added)


def test_a_listing_whose_snapshot_was_dropped_goes_on_correctly(fs: FileStore, root: Path) -> None:
    """Many listings at once, from several threads, more than the driver keeps snapshots
    of: each still lists every entry exactly once, in order."""
    expected = {}
    for d in range(12):
        expected[f"d{d}/"] = [f"d{d}/{name}" for name in _fill(root / f"d{d}", 150)]
    errors: list[BaseException] = []

    def walk(prefix: str) -> None:
        try:
            for _ in range(2):
                names, _pages_count = _pages(fs, prefix, "/", 9)
                assert names == expected[prefix]
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=walk, args=(prefix,)) for prefix in expected]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[0]


def test_prefixes_and_markers_interleave_in_byte_order_across_pages(fs: FileStore, root: Path) -> None:
    """A directory's prefix `a/` sorts after the object `a.txt` and before `a0` (byte
    order with the delimiter), on whichever page they fall."""
    for key in ["top/a.txt", "top/a/x", "top/a0", "top/é", "top/z/", "top/b-c", "top/b/q"]:
        fs.put(key, b"" if key.endswith("/") else b"1")
    (root / "top" / "empty").mkdir()  # no object below: no prefix
    for max_keys in (1, 2, 3, 1000):
        names, _ = _pages(fs, "top/", "/", max_keys)
        assert names == ["top/a.txt", "top/a/", "top/a0", "top/b-c", "top/b/", "top/z/", "top/é"]
    assert _pages(fs, "top/", None, 2)[0] == [
        "top/a.txt",
        "top/a/x",
        "top/a0",
        "top/b-c",
        "top/b/q",
        "top/z/",
        "top/é",
    ]
    assert _pages(fs, "top/", "-", 2)[0] == [
        "top/a.txt",
        "top/a/x",
        "top/a0",
        "top/b-",
        "top/b/q",
        "top/z/",
        "top/é",
    ]


def test_snapshots_are_bounded_dropped_when_idle_and_never_older_than_a_dropped_one(
    tmp_path: Path,
) -> None:
    now = [0.0]
    snaps = DirSnapshots(limit=3, max_names=10, idle=30.0, clock=lambda: now[0])
    for name in "abcde":
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_bytes(b"")
    scans = {name: snaps.scan(str(tmp_path / name)) for name in "abcde"}
    assert scans["a"][0] == ["f"]
    for name in "abcd":
        snaps.keep(str(tmp_path / name), *scans[name])
    assert snaps.held() == 3 and snaps.get(str(tmp_path / "a")) is None  # least recently used
    # Too many names in all: older ones go, the newest stays whatever its size.
    big = tmp_path / "big"
    _fill(big, 20)
    snaps.keep(str(big), *snaps.scan(str(big)))
    assert snaps.held() == 1 and snaps.get(str(big)) is not None
    # A scan older than one dropped is not kept: it could hide what the dropped one showed.
    old_a = snaps.scan(str(tmp_path / "a"))
    newer_b = snaps.scan(str(tmp_path / "b"))
    snaps.keep(str(tmp_path / "b"), *newer_b)  # and big goes: too many names
    snaps.keep(str(tmp_path / "c"), *snaps.scan(str(tmp_path / "c")))
    snaps.keep(str(tmp_path / "d"), *snaps.scan(str(tmp_path / "d")))
    snaps.keep(str(tmp_path / "e"), *snaps.scan(str(tmp_path / "e")))  # b goes
    snaps.keep(str(tmp_path / "a"), *old_a)
    assert snaps.get(str(tmp_path / "a")) is None
    # Idle snapshots go at the next call.
    now[0] += 31.0
    assert snaps.get(str(tmp_path / "e")) is None and snaps.held() == 0


def test_only_a_listing_of_several_pages_holds_a_snapshot(local_fs: FileStore, root: Path) -> None:
    fs = local_fs
    _fill(root / "dir", 50)
    assert len(_pages(fs, "dir/", "/", 1000)[0]) == 50
    assert fs._lister.snapshots.held() == 0
    assert len(_pages(fs, "dir/", None, 7)[0]) == 50
    assert fs._lister.snapshots.held() == 1  # until it is idle or crowded out


def _page_sequence(store: Any, prefix: str, max_keys: int) -> list[tuple[list[str], list[str], bool]]:
    """Each page of a delimiter listing: (object keys, prefixes, whether more follow)."""
    pages = []
    token = None
    while True:
        page = store.list(prefix, "/", token, max_keys)
        pages.append(([o.key for o in page.objects], page.prefixes, page.next_token is not None))
        if page.next_token is None:
            return pages
        token = page.next_token
        assert len(pages) < 1000


def test_a_directory_listing_pages_exactly_as_s3_does(fs: FileStore, root: Path) -> None:
    """The driver builds the delimiter pages of a whole directory in a loop of its own:
    page for page, they are the memory store's (S3's rules), markers, prefixes of
    directories holding only a marker, names sorting around the delimiter, empty
    directories (no prefix) and all."""
    keys = [
        "top/",
        "top/a-",
        "top/a.txt",
        "top/a/",
        "top/a/x",
        "top/a0",
        "top/b/c/d",
        "top/m/",
        "top/é",
        "top/z",
        "top/zz/y",
        "top/a/deep/",
        "top/a/y",
        "other",
    ]
    memory = MemoryStore()
    for key in keys:
        body = b"" if key.endswith("/") else key.encode()
        fs.put(key, body)
        memory.put(key, body)
    (root / "top" / "empty").mkdir()
    (root / "top" / "empty2" / "deeper").mkdir(parents=True)
    for prefix in ("", "top/", "top/a/", "top/b/", "top/m/", "nothing/"):
        for max_keys in (1, 2, 3, 5, 1000):
            got = _page_sequence(fs, prefix, max_keys)
            assert got == _page_sequence(memory, prefix, max_keys), (prefix, max_keys)


def test_a_listing_resumes_from_its_token_after_its_snapshot_was_dropped(
    local_fs: FileStore, root: Path
) -> None:
    fs = local_fs
    for key in ("top/", "top/a-", "top/a.txt", "top/a/x", "top/a0", "top/b/c", "top/m/", "top/z", "top/zz/y"):
        fs.put(key, b"")
    fs.put("top/é", b"")
    first = fs.list("top/", "/", None, 3)
    fs._lister.snapshots = DirSnapshots()
    rest = fs.list("top/", "/", first.next_token, 1000)
    listed = [o.key for o in first.objects] + first.prefixes + [o.key for o in rest.objects] + rest.prefixes
    assert sorted(listed) == [
        "top/",
        "top/a-",
        "top/a.txt",
        "top/a/",
        "top/a0",
        "top/b/",
        "top/m/",
        "top/z",
        "top/zz/",
        "top/é",
    ]

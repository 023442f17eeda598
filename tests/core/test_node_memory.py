"""A mount holds one `Node` per entry the kernel or a listing knows: at 100,000 entries and
more, what one costs is the daemon's memory. Nodes keep their fields in slots, not a dict."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path
from typing import Any

from fusestore.cache import Journal
from fusestore.core import Kind, Node
from fusestore.core.namespace import Defaults, Namespace
from fusestore.stores import ObjectInfo

#: bytes one file's node may take, its name apart (about 380 with slots; 1,700 with a dict)
NODE_BYTES_MAX = 600


def test_a_node_has_no_per_instance_dict() -> None:
    node = Node(2, Kind.FILE, "a", None, 0o644, 0, 0, 0)
    assert not hasattr(node, "__dict__")


def test_ten_thousand_nodes_stay_small() -> None:
    root = Node(1, Kind.DIR, "", None, 0o755, 0, 0, 0)
    names = [f"file-{i:06d}" for i in range(10_000)]  # made before measuring: not counted
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        nodes = [Node(i + 2, Kind.FILE, name, root, 0o644, 0, 0, 0) for i, name in enumerate(names)]
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(nodes) == len(names)
    assert used / len(nodes) <= NODE_BYTES_MAX, f"{used / len(nodes):.0f} bytes per node"


#: all-in bytes one listed object may cost once merged (its node, its name, its slots in
#: the tree and in the inode table, its key, etag and numbers), the listing itself gone:
#: 486 measured (802 when every field had a slot, and every key, etag and mode was
#: an object of its own)
LISTED_ENTRY_BYTES_MAX = 500


class _MetaIndex(dict[Any, Any]):
    """The metadata index, in memory (the mount's is on disk: no Python objects)."""

    def set(self, key: Any, value: Any) -> None:
        self[key] = value


def test_a_listed_entry_costs_a_bounded_number_of_bytes(tmp_path: Path) -> None:
    """A directory of 100,000 objects listed without metadata (as S3 lists) and merged:
    what stays per entry is measured with the listing itself freed."""
    count = 100_000
    journal = Journal(tmp_path / "journal")
    try:
        ns = Namespace(Defaults(1000, 1000), journal, _MetaIndex())
        big = ns.new_node(Kind.DIR, "big", ns.root, 0o755, 1000, 1000, 0)
        ns.attach(ns.root, "big", big)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            listing = [
                ObjectInfo(f"big/file-{i:06d}.jpg", 1000 + i, f'"{i:032x}"', 1.7e9 + i) for i in range(count)
            ]
            ns.merge_listing(big, listing, [])
            del listing
            gc.collect()
            used = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    finally:
        journal.close()
    assert big.children is not None and len(big.children) == count
    assert used / count <= LISTED_ENTRY_BYTES_MAX, f"{used / count:.0f} bytes per entry"


def test_compact_fields_read_back_exactly_as_set() -> None:
    """The remote key kept as prefix and name, the etag as a number: both read back as
    written, whatever becomes of the node's name, and whatever form the etag has."""
    root = Node(1, Kind.DIR, "", None, 0o755, 0, 0, 0)
    node = Node(2, Kind.FILE, "a", root, 0o644, 0, 0, 0)
    for key in ("a", "d/a", "d/xa", "a/b", "da", "", "d/", "d/a/", None):
        node.remote_key = key
        assert node.remote_key == key
    node.remote_key = "d/a"
    node.name = "b"  # a rename changes the key, never the remote key
    assert node.remote_key == "d/a"
    md5 = '"' + "0123456789abcdef" * 2 + '"'
    for etag in (
        md5,
        md5.upper(),
        '"d41d8cd98f00b204e9800998ecf8427e"',
        '"abc-2"',
        "abc",
        '"0x' + "0" * 30 + '"',
        '"7a2b31-18eeb570d1170dc6-0-"',
        "é",
        "",
        None,
    ):
        node.etag = etag
        assert node.etag == etag
    assert node.opens == 0 and node.children is None and node._rare is None
    node.opens += 1
    node.opens -= 1
    assert node.opens == 0 and node.children is None

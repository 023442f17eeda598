"""A mount holds one `Node` per entry the kernel or a listing knows: at 100,000 entries and
more, what one costs is the daemon's memory. Nodes keep their fields in slots, not a dict."""

from __future__ import annotations

import tracemalloc

from fusestore.core import Kind, Node

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

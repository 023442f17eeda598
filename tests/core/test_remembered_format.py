"""Remembered listings are kept as columns of plain values, and a cache written in the
older form (a list of ObjectInfo, with or without the time taken) still reads."""

from __future__ import annotations

import pickle

from fusestore.core.listings import pack_listing, unpack_listing
from fusestore.stores import ObjectInfo

OBJECTS = [
    ObjectInfo("d/", 0, '"m"', 1.5, None),
    ObjectInfo("d/a", 3, '"e1"', 1.7e9, {"mode": "33188"}),
    ObjectInfo("d/b c", 0, '"e2"', 1.7e9 + 0.25, {}),
]


def test_a_listing_comes_back_as_it_was_kept() -> None:
    kept = pickle.loads(pickle.dumps(pack_listing("d/", OBJECTS, ["d/sub/"], 123.0)))
    objects, prefixes, taken = unpack_listing(kept, None, 60.0) or ([], [], 0.0)
    assert objects == OBJECTS
    assert [o.metadata for o in objects] == [o.metadata for o in OBJECTS]  # not compared by ==
    assert (prefixes, taken) == (["d/sub/"], 123.0)


def test_keys_outside_the_prefix_are_kept_whole() -> None:
    odd = [*OBJECTS, ObjectInfo("elsewhere", 1, '"x"', 2.0, None)]
    objects, _, _ = unpack_listing(pack_listing("d/", odd, [], 1.0), None, 60.0) or ([], [], 0.0)
    assert objects == odd


def test_an_older_cache_s_listings_still_read() -> None:
    assert unpack_listing((OBJECTS, ["p/"], 5.0), None, 60.0) == (OBJECTS, ["p/"], 5.0)
    # without the time taken: as taken a TTL before it expires
    assert unpack_listing((OBJECTS, ["p/"]), 1000.0, 60.0) == (OBJECTS, ["p/"], 940.0)


def test_anything_else_is_no_listing() -> None:
    for value in (None, "x", (1, 2, 3, 4), ("columns-0", *range(8)), [OBJECTS, []]):
        assert unpack_listing(value, None, 60.0) is None

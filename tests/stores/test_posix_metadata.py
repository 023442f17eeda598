"""s3fs-compatible POSIX metadata read from objects: every value that is not a valid
attribute for the object is ignored, field by field, and nothing raises."""

from __future__ import annotations

import stat
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fusestore.stores import PosixAttrs

GOOD = {"mode": str(stat.S_IFREG | 0o640), "uid": "1000", "gid": "1001", "mtime": "1700000000.5"}
GOOD_ATTRS = PosixAttrs(stat.S_IFREG | 0o640, 1000, 1001, 1_700_000_000_500_000_000)


@pytest.mark.parametrize(
    "value",
    [
        "99999999999999999999",
        "4294967296",
        "4294967295",  # chown's "leave unchanged", never an owner
        "-1",
        "-0",
        "1e3",
        "0x10",
        "1_000",
        "+5",
        "١٢",  # digits, but not ASCII ones
        "²",
        "12abc",
        "",
        " ",
        "1.5",
        "9" * 5000,  # longer than int() converts
        "nan",
    ],
)
@pytest.mark.parametrize("field", ["uid", "gid"])
def test_an_owner_out_of_range_or_not_a_number_is_ignored(field: str, value: str) -> None:
    attrs = PosixAttrs.from_metadata({**GOOD, field: value})
    assert getattr(attrs, field) is None
    others = {name: getattr(GOOD_ATTRS, name) for name in ("mode", "uid", "gid", "mtime_ns") if name != field}
    assert {name: getattr(attrs, name) for name in others} == others


def test_the_highest_owner_is_read() -> None:
    attrs = PosixAttrs.from_metadata({"uid": "4294967294", "gid": "0"})
    assert (attrs.uid, attrs.gid) == (2**32 - 2, 0)


@pytest.mark.parametrize(
    "value",
    [
        "4294967295",
        str(0o177777 + 1),
        "-33188",
        "0o644",
        "rwx",
        "33188.0",
        str(stat.S_IFIFO | 0o644),  # a special file's mode on an object with data
        str(stat.S_IFCHR | 0o644),
        str(stat.S_IFBLK | 0o644),
        str(stat.S_IFSOCK | 0o644),
        str(stat.S_IFDIR | 0o755),  # a directory's mode on an object that is not a marker
    ],
)
def test_a_mode_out_of_range_or_of_the_wrong_type_is_ignored_whole(value: str) -> None:
    attrs = PosixAttrs.from_metadata({**GOOD, "mode": value}, size=1)
    assert attrs == PosixAttrs(None, 1000, 1001, GOOD_ATTRS.mtime_ns)


@pytest.mark.parametrize(
    ("mode", "directory", "size", "valid"),
    [
        (stat.S_IFREG | 0o644, False, 10, True),
        (0o644, False, 10, True),  # permission bits alone
        (stat.S_IFLNK | 0o777, False, 4095, True),
        (stat.S_IFLNK | 0o777, False, 4096, False),  # too big to be a symlink's target
        (stat.S_IFDIR | 0o755, True, 0, True),
        (0o755, True, 0, True),
        (stat.S_IFREG | 0o644, True, 0, False),  # a marker is a directory
        (stat.S_IFLNK | 0o777, True, 0, False),
        (stat.S_IFREG | 0o7777, False, 0, True),  # setuid, setgid and sticky bits are bits
        (stat.S_IFIFO | 0o644, False, 0, True),  # special files are empty objects
        (stat.S_IFSOCK | 0o755, False, 0, True),
        (stat.S_IFCHR | 0o620, False, 0, True),
        (stat.S_IFBLK | 0o660, False, 0, True),
        (stat.S_IFIFO | 0o644, False, 1, False),  # one with data is a file
        (stat.S_IFCHR | 0o620, True, 0, False),  # a marker is a directory
    ],
)
def test_a_mode_must_fit_the_object_it_describes(mode: int, directory: bool, size: int, valid: bool) -> None:
    attrs = PosixAttrs.from_metadata({"mode": str(mode)}, directory=directory, size=size)
    assert attrs.mode == (mode if valid else None)
    assert attrs.is_symlink == (valid and stat.S_ISLNK(mode))


@pytest.mark.parametrize(
    "value",
    [
        "nan",
        "NaN",
        "inf",
        "-inf",
        "--1",
        "- 1",
        "1e9",
        "9223372036854775808",
        "-9223372036854775809",
        "1" * 30,
        "",
        "soon",
    ],
)
def test_a_modification_time_that_is_no_time_or_out_of_range_is_ignored(value: str) -> None:
    attrs = PosixAttrs.from_metadata({**GOOD, "mtime": value})
    assert attrs == PosixAttrs(GOOD_ATTRS.mode, 1000, 1001, None)


def test_the_latest_and_earliest_times_are_read() -> None:
    assert PosixAttrs.from_metadata({"mtime": "9223372036.854775807"}).mtime_ns == 2**63 - 1
    assert PosixAttrs.from_metadata({"mtime": "9223372036854775807"}).mtime_ns == (2**63 - 1) * 10**9
    assert PosixAttrs.from_metadata({"mtime": "-9223372036854775808"}).mtime_ns == -(2**63) * 10**9
    assert PosixAttrs.from_metadata({"mtime": "-1.5"}).mtime_ns == -1_500_000_000
    assert PosixAttrs.from_metadata({"mtime": "+123.5"}).mtime_ns == 123_500_000_000  # a sign either way
    assert PosixAttrs.from_metadata({"mtime": "+9223372036854775807"}).mtime_ns == (2**63 - 1) * 10**9
    assert PosixAttrs.from_metadata({"mtime": "0"}).mtime_ns == 0
    assert PosixAttrs.from_metadata({"mtime": "1.123456789999"}).mtime_ns == 1_123_456_789


@pytest.mark.parametrize("value", [None, 33188, 33188.0, b"33188", ["33188"], {"x": 1}, True])
def test_a_value_that_is_not_text_is_ignored(value: Any) -> None:
    metadata = {"mode": value, "uid": value, "gid": value, "mtime": value}
    assert PosixAttrs.from_metadata(metadata) == PosixAttrs()


@pytest.mark.parametrize("metadata", [None, {}, "mode=33188", 42, [("mode", "33188")]])
def test_metadata_that_is_no_mapping_is_none(metadata: Any) -> None:
    assert PosixAttrs.from_metadata(metadata) == PosixAttrs()


VALUES = st.one_of(
    st.text(),
    st.text(alphabet="0123456789-+.eE xnaifNAIF"),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.binary().map(lambda b: b.decode("latin-1")),
    st.integers(),
    st.floats(),
    st.binary(),
    st.none(),
)


@settings(max_examples=500, deadline=None)
@example(metadata={"mode": str(stat.S_IFIFO | 0o644)}, directory=False, size=0)
@example(metadata={"mode": str(stat.S_IFCHR | 0o644), "rdev": "259"}, directory=False, size=1)
@given(
    metadata=st.dictionaries(
        st.sampled_from(["mode", "uid", "gid", "mtime", "rdev", "ctime", "atime", "xattr", "other"]), VALUES
    ),
    directory=st.booleans(),
    size=st.integers(min_value=0, max_value=2**40),
)
def test_any_metadata_gives_attributes_in_range(metadata: dict[str, Any], directory: bool, size: int) -> None:
    attrs = PosixAttrs.from_metadata(metadata, directory=directory, size=size)
    for owner in (attrs.uid, attrs.gid):
        assert owner is None or 0 <= owner <= 2**32 - 2
    for ns in (attrs.mtime_ns, attrs.ctime_ns, attrs.atime_ns):
        assert ns is None or -(2**63) * 10**9 <= ns < 2**63 * 10**9
    if attrs.rdev is not None:
        assert 0 <= attrs.rdev < 2**64 and stat.S_IFMT(attrs.mode or 0) in {stat.S_IFCHR, stat.S_IFBLK}
    if attrs.mode is not None:
        kinds = {0, stat.S_IFDIR} if directory else {0, stat.S_IFREG, stat.S_IFLNK}
        if not directory and size == 0:
            kinds |= {stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK}
        assert 0 <= attrs.mode <= 0o177777 and stat.S_IFMT(attrs.mode) in kinds
        assert not attrs.is_symlink or size <= 4095
    # What is read is written back as it was read.
    assert PosixAttrs.from_metadata(attrs.to_metadata(), directory=directory, size=size) == attrs


def test_other_names_are_written_back_as_they_were() -> None:
    attrs = PosixAttrs(stat.S_IFREG | 0o600, 1, 2, 1_000_000_000)
    stored = {"mode": "4294967295", "uid": "x", "color": "blue", "Bad Name": "v", "note": "café", "n": 5}
    written = {"color": "blue", "mode": "33152", "uid": "1", "gid": "2", "mtime": "1"}
    assert attrs.to_metadata(stored) == written
    assert attrs.to_metadata(["not", "a", "mapping"]) == attrs.to_metadata()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("metadata", "other"),
    [
        ({}, False),
        ({"mode": "33188", "uid": "0", "gid": "0", "mtime": "1.5"}, False),
        ({"fusestore-upload": "t", "mtime": "1"}, False),
        ({"mode": "33188", "color": "red"}, True),
        ({"s3cmd-attrs": "x"}, True),
    ],
)
def test_another_tool_s_names_are_told_apart_from_fusestore_s(metadata: dict[str, str], other: bool) -> None:
    from fusestore.stores.posix import carries_other_names

    assert carries_other_names(metadata) is other


@pytest.mark.parametrize(
    ("mode", "rdev", "read"),
    [
        (stat.S_IFCHR | 0o620, "1025", 1025),
        (stat.S_IFBLK | 0o660, str(2**64 - 1), 2**64 - 1),
        (stat.S_IFBLK | 0o660, str(2**64), None),  # beyond st_rdev
        (stat.S_IFCHR | 0o620, "-1", None),
        (stat.S_IFCHR | 0o620, "0x401", None),
        (stat.S_IFIFO | 0o644, "1025", None),  # only a device has a number
        (stat.S_IFREG | 0o644, "1025", None),
    ],
)
def test_a_device_number_is_read_for_devices_only_and_garbage_is_ignored(
    mode: int, rdev: str, read: int | None
) -> None:
    attrs = PosixAttrs.from_metadata({"mode": str(mode), "rdev": rdev})
    assert attrs.mode == mode and attrs.rdev == read
    if read is not None:
        assert attrs.to_metadata()["rdev"] == rdev


@settings(max_examples=300, deadline=None)
@given(
    xattrs=st.dictionaries(
        st.text(min_size=1, max_size=40).map(lambda name: "user." + name), st.binary(max_size=64), max_size=6
    )
)
def test_xattrs_round_trip_through_metadata_as_printable_ascii(xattrs: dict[str, bytes]) -> None:
    attrs = PosixAttrs(xattrs=tuple(sorted(xattrs.items())) or None)
    metadata = attrs.to_metadata()
    assert all(value.isascii() and value.isprintable() for value in metadata.values())
    assert PosixAttrs.from_metadata(metadata) == attrs


def test_times_are_written_with_nanoseconds_and_read_back() -> None:
    attrs = PosixAttrs(mtime_ns=1_500_000_000_000_000_001, ctime_ns=1_500_000_000_5 * 10**8, atime_ns=10**9)
    assert attrs.to_metadata() == {"mtime": "1500000000.000000001", "ctime": "1500000000.5", "atime": "1"}
    assert PosixAttrs.from_metadata(attrs.to_metadata()) == attrs


@pytest.mark.parametrize(
    "ns", [-1, -1_500_000_000, -(2**63) * 10**9, (2**63 - 1) * 10**9 + 999_999_999, 0, 5]
)
def test_times_before_1970_and_far_ahead_are_written_as_they_are_read(ns: int) -> None:
    attrs = PosixAttrs(mtime_ns=ns, ctime_ns=ns, atime_ns=ns)
    assert PosixAttrs.from_metadata(attrs.to_metadata()) == attrs

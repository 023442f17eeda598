"""The debug log of store calls: one line per call once it ended (what was asked, the
outcome, how long it took, which try), a name for every callable, never a body."""

from __future__ import annotations

import functools
import logging
import re

import pytest

from fusestore.stores import NotFound, StoreUnavailable
from fusestore.stores.memory import MemoryStore
from fusestore.writeback.storecalls import StoreCalls, describe_call

LINE = re.compile(
    r"^store call: (?P<what>.+) (?P<outcome>-> .+|failed: \w+) \((?P<ms>\d+\.\d) ms, try (?P<try>\d+)\)$"
)


def store_lines(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    found = [LINE.match(r.getMessage()) for r in caplog.records if r.name == "fusestore.writeback.storecalls"]
    assert all(found), [r.getMessage() for r in caplog.records]
    return [m for m in found if m is not None]


class Unnamed:
    """A callable without a __name__ of its own."""

    def __call__(self, key: str) -> str:
        return "done"


@pytest.mark.timeout(60)
@pytest.mark.trio
async def test_each_call_is_one_line_with_its_outcome_time_and_try(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="fusestore")
    store = MemoryStore()
    calls = StoreCalls(store, io_timeout=10)
    await calls.run(store.put, "a/b", b"secret body bytes")
    with pytest.raises(NotFound):
        await calls.run(store.head, "missing")
    assert await calls.run(Unnamed(), "k") == "done"
    assert await calls.run(functools.partial(Unnamed(), "k")) == "done"

    failures = iter([StoreUnavailable("down"), StoreUnavailable("down")])

    def flaky(key: str) -> str:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return "up"

    assert await calls.ask(flaky, "c") == "up"
    lines = store_lines(caplog)
    assert [(m["what"], m["outcome"], m["try"]) for m in lines] == [
        ("put 'a/b'", lines[0]["outcome"], "1"),
        ("head 'missing'", "failed: NotFound", "1"),
        ("Unnamed 'k'", "-> 'done'", "1"),
        ("Unnamed 'k'", "-> 'done'", "1"),
        ("flaky 'c'", "failed: StoreUnavailable", "1"),
        ("flaky 'c'", "failed: StoreUnavailable", "2"),
        ("flaky 'c'", "-> 'up'", "3"),
    ]
    assert "secret body bytes" not in caplog.text
    assert calls.counts["Unnamed"] == 2 and calls.counts["flaky"] == 3


def test_a_call_is_described_by_its_name_and_keys_never_its_body() -> None:
    call = functools.partial(functools.partial(MemoryStore().put, "k"), body=b"data", if_none_match=True)
    assert describe_call(call) == "put 'k' if_none_match=True"

"""The probe of whether the store honours conditional writes leaves no object behind,
even when the daemon is killed in the middle of it."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
import trio

from fusestore.stores import Store, StoreUnavailable
from fusestore.stores.base import Body
from fusestore.stores.wrapper import WrappedStore
from fusestore.writeback.conditions import PROBE_PREFIX

from .conftest import Env, write_file
from .test_journal_and_remount import crash_copy

pytestmark = pytest.mark.trio


class KilledDuringProbe(WrappedStore):
    """`inner` until the probe's second PUT, which waits for `killed`: from then on
    nothing this mount sends reaches the store (its process is gone)."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.probe_puts = 0
        self.probing = threading.Event()
        self.killed = threading.Event()

    def check_write(self, keys: Iterable[str]) -> None:
        if self.killed.is_set():
            raise StoreUnavailable("test: this daemon was killed")

    def put(
        self,
        key: str,
        body: Body,
        metadata: Mapping[str, str] | None = None,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        if key.startswith(PROBE_PREFIX):
            self.probe_puts += 1
            if self.probe_puts == 2:
                self.probing.set()
                self.killed.wait(10)
        return super().put(key, body, metadata, if_match=if_match, if_none_match=if_none_match)


def probe_objects(env: Env) -> list[str]:
    return [key for key in env.objects() if key.startswith(PROBE_PREFIX)]


async def test_a_probe_cut_by_a_crash_is_deleted_by_the_next_mount(env: Env, tmp_path: Path) -> None:
    dying = KilledDuringProbe(env.store)
    async with env.mount(probe=True, sync=False, store=dying) as fs:
        await write_file(fs, "a", b"1")
        with trio.fail_after(5):
            await trio.to_thread.run_sync(dying.probing.wait)
        crash_copy(env, tmp_path / "after-kill")  # the cache as kill -9 leaves it now
        dying.killed.set()
    assert len(probe_objects(env)) == 1, "the killed daemon left its probe object"

    async with env.mount() as fs:
        with trio.fail_after(5):
            await fs.flusher.sync_all()
    assert env.objects() == {"a": b"1"}, "the next mount deleted the probe object"

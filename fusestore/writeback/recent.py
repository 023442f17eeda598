"""The last few things that went wrong while uploading, for `fusestore status`.

A bounded list (`RECENT_EVENTS`): an upload that failed (it is retried), a change kept as
a conflict copy, a name the store refuses, the store stopping or starting to answer.
Noting one is O(1) on the trio thread; the oldest falls off. Nothing here is durable: the
log has every event, this is a glance.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

#: How many events `status` shows.
RECENT_EVENTS = 20


class RecentEvents:
    """The last `RECENT_EVENTS` events, oldest first; synchronous and cheap."""

    def __init__(self, keep: int = RECENT_EVENTS) -> None:
        self._events: deque[tuple[float, str, str]] = deque(maxlen=keep)

    def note(self, kind: str, text: str) -> None:
        """Remember one event of `kind` ("error", "conflict", "refused", "store") now,
        wall clock."""
        self._events.append((time.time(), kind, text))

    def as_list(self) -> list[dict[str, Any]]:
        """The events as the status answer carries them: time (Unix seconds), kind, text."""
        return [{"time": when, "kind": kind, "text": text} for when, kind, text in self._events]

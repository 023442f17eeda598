"""`fusestore status --watch`: the mounts' status again every interval, until Ctrl-C.

Everything shown comes from the control socket's `status` answer; the rates are the
change of its running totals (`uploaded_bytes`, `downloaded_bytes`) between two answers.
On a terminal, one view redrawn in place (rich's `Live`): per mount the store's state,
upload and download rates, dirty data against `--dirty-limit` and the cache against
`--cache-size` as bars, the uploads in flight (with a bar where the bytes sent are
known: big files sent in parts ahead), and the recent failures and conflicts. Otherwise
(a pipe, a file) plain lines: one per mount per interval, and one per new event, so a
log of it reads in order. Ctrl-C ends it with exit 0.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .common import size_text

#: Events shown per mount on a terminal (the status answer keeps the last 20).
EVENTS_SHOWN = 5

Poll = Callable[[], list[dict[str, Any]]]


@dataclass
class Rates:
    """Bytes per second up and down of each mount, from two successive answers (None
    until there are two)."""

    _last: dict[str, tuple[float, int, int]] = field(default_factory=dict)
    rates: dict[str, tuple[float, float]] = field(default_factory=dict)

    def update(self, statuses: Iterable[dict[str, Any]], now: float) -> None:
        for status in statuses:
            if "error" in status:
                continue
            point = status["mountpoint"]
            up, down = int(status.get("uploaded_bytes", 0)), int(status.get("downloaded_bytes", 0))
            last = self._last.get(point)
            if last is not None and now > last[0]:
                elapsed = now - last[0]
                self.rates[point] = (max(0, up - last[1]) / elapsed, max(0, down - last[2]) / elapsed)
            self._last[point] = (now, up, down)

    def of(self, point: str) -> tuple[float, float] | None:
        return self.rates.get(point)


def _rate(rates: tuple[float, float] | None, which: int) -> str:
    return "…" if rates is None else f"{size_text(rates[which])}/s"


def _clock(when: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(when))


def plain_lines(
    statuses: list[dict[str, Any]], rates: Rates, seen: dict[str, float], now: float
) -> list[str]:
    """The lines of one interval without a terminal: one per mount, then one per event
    newer than the last one `seen` of that mount (updated)."""
    stamp = _clock(now)
    lines = [] if statuses else [f"{stamp} no fusestore mounts"]
    for s in statuses:
        point = s["mountpoint"]
        if "error" in s:
            lines.append(f"{stamp} {point}: {s['error']}")
            continue
        pair = rates.of(point)
        lines.append(
            f"{stamp} {point}: store {'answers' if s['store_online'] else 'DOES NOT ANSWER'}; "
            f"up {_rate(pair, 0)}, down {_rate(pair, 1)}; "
            f"dirty {size_text(s['dirty_bytes'])} of {size_text(s['dirty_limit'])} "
            f"({s['dirty_items']} item(s)); "
            f"cache {size_text(s['cache_used'])} of {size_text(s['cache_limit'])}; "
            f"{s['uploads_in_flight']} upload(s) in flight; {s.get('conflicts', 0)} conflict(s), "
            f"{s['failed_attempts']} failed attempt(s)"
        )
        last = seen.get(point, 0.0)
        for event in s.get("recent_events", []):
            if event["time"] > last:
                lines.append(f"{_clock(event['time'])} {point}: {event['kind']}: {event['text']}")
                seen[point] = event["time"]
    return lines


def _bar(used: int, limit: int) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_row(
        ProgressBar(total=max(limit, 1), completed=min(used, max(limit, 1)), width=30),
        Text(f"{size_text(used)} of {size_text(limit)}"),
    )
    return grid


def mount_view(s: dict[str, Any], rates: tuple[float, float] | None) -> RenderableType:
    """One mount's part of the terminal view."""
    if "error" in s:
        return Text(f"{s['mountpoint']}: {s['error']}", style="red")
    # The heading above the table, not its title: a title wraps at the table's width.
    heading = Text(f"{s['mountpoint']}  ←  {s['store']}  (pid {s['pid']}, {s['state']})", style="bold")
    table = Table(show_header=False, expand=False)
    table.add_column(style="bold")
    table.add_column()
    online = (
        Text("answers", style="green") if s["store_online"] else Text("DOES NOT ANSWER", style="bold red")
    )
    table.add_row("store", online)
    table.add_row(
        "transfer",
        f"up {_rate(rates, 0)} ({size_text(s.get('uploaded_bytes', 0))} so far), "
        f"down {_rate(rates, 1)} ({size_text(s.get('downloaded_bytes', 0))} so far)",
    )
    table.add_row("dirty", _bar(s["dirty_bytes"], s["dirty_limit"]))
    table.add_row("", f"{s['dirty_items']} item(s), {s['deletes_pending']} delete(s) pending")
    table.add_row("cache", _bar(s["cache_used"], s["cache_limit"]))
    uploads = s.get("uploads", [])
    table.add_row("uploads", f"{s['uploads_in_flight']} in flight")
    for upload in uploads:
        sent, size = upload.get("sent"), upload["size"]
        if sent is not None and size:
            table.add_row("", Group(Text(upload["path"]), _bar(sent, size)))
        else:
            table.add_row("", f"{upload['path']} ({size_text(size)})")
    table.add_row(
        "problems",
        f"{s.get('conflicts', 0)} conflict(s), {s['failed_attempts']} failed attempt(s)"
        + (f", {s['not_uploadable']} NOT UPLOADABLE" if s.get("not_uploadable") else ""),
    )
    for event in s.get("recent_events", [])[-EVENTS_SHOWN:]:
        style = "yellow" if event["kind"] == "conflict" else "red"
        table.add_row("", Text(f"{_clock(event['time'])} {event['kind']}: {event['text']}", style=style))
    return Group(heading, table)


def view(statuses: list[dict[str, Any]], rates: Rates) -> RenderableType:
    """The whole terminal view: every mount's table."""
    if not statuses:
        return Text("no fusestore mounts")
    return Group(*(mount_view(s, None if "error" in s else rates.of(s["mountpoint"])) for s in statuses))


def watch(poll: Poll, interval: float, out: TextIO) -> None:
    """Show `poll()` every `interval` seconds until interrupted (KeyboardInterrupt ends
    it quietly, as does a reader of the lines going away). Blocks; each poll is one
    request per mount."""
    rates = Rates()
    console = Console(file=out)
    try:
        if console.is_terminal:
            with Live(console=console, auto_refresh=False, transient=False) as live:
                while True:
                    statuses = poll()
                    rates.update(statuses, time.monotonic())
                    live.update(view(statuses, rates), refresh=True)
                    time.sleep(interval)
        seen: dict[str, float] = {}
        while True:
            statuses = poll()
            rates.update(statuses, time.monotonic())
            for line in plain_lines(statuses, rates, seen, time.time()):
                out.write(line + "\n")
            out.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        return
    except BrokenPipeError:
        # The reader went away (`| head`): done, without a traceback at exit's flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())

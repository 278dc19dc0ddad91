"""Progress for `wxgate batch`: live bars on a terminal, periodic plain lines elsewhere.

Without a terminal (CI logs, `| tee`, cron mail) rich's bars would print nothing useful, or
a redraw per refresh; there a line like `sent 1200/5000  delivered 800/5000 (running)` is
printed at most every PLAIN_EVERY_S seconds, and once more when the work ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

PLAIN_EVERY_S = 5.0
_COLUMNS = (
    TextColumn("{task.description:>10}"),
    BarColumn(),
    MofNCompleteColumn(),
    TimeElapsedColumn(),
    TextColumn("{task.fields[note]}"),
)


@dataclass
class _Bar:
    completed: int = 0
    total: int = 1
    note: str = ""


@dataclass
class Bars:
    """Named bars: `set(name, completed, total, note)`; shown as rich bars or plain lines."""

    console: Console
    names: tuple[str, ...]
    plain_every_s: float = PLAIN_EVERY_S
    _bars: dict[str, _Bar] = field(default_factory=dict)
    _progress: Progress | None = None
    _tasks: dict[str, TaskID] = field(default_factory=dict)
    _printed_at: float | None = None
    _last_line: str = ""

    def __enter__(self) -> Bars:
        self._bars = {n: _Bar() for n in self.names}
        if self.console.is_terminal:
            self._progress = Progress(*_COLUMNS, console=self.console)
            self._progress.__enter__()
            self._tasks = {n: self._progress.add_task(n, total=1, note="") for n in self.names}
        return self

    def set(self, name: str, completed: int, total: int, note: str = "") -> None:
        bar = self._bars[name]
        bar.completed, bar.total, bar.note = completed, max(1, total), note
        if self._progress is not None:
            self._progress.update(
                self._tasks[name], completed=completed, total=bar.total, note=note
            )
        else:
            self._plain(force=False)

    def advance(self, name: str, n: int) -> None:
        bar = self._bars[name]
        self.set(name, bar.completed + n, bar.total, bar.note)

    def _plain(self, force: bool) -> None:
        now = time.monotonic()
        if not force and self._printed_at is not None:
            if now - self._printed_at < self.plain_every_s:
                return
        line = "  ".join(
            f"{n} {b.completed}/{b.total}" + (f" ({b.note})" if b.note else "")
            for n, b in self._bars.items()
        )
        if force and line == self._last_line:
            return
        self._printed_at, self._last_line = now, line
        self.console.print(line, markup=False, highlight=False)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(kind, exc, tb)
        elif kind is None:
            self._plain(force=True)

"""Structured CLI output: JSON that scripts can parse, and the same data for people.

`--json` prints the API's own JSON on one line (epoch seconds, as the API documents); without
it a command prints for people: indented JSON (still valid JSON) with every `*_at` time in
ISO 8601 with this machine's zone. Both go to stdout as plain text, never through rich markup
or line wrapping, so ids and values stay whole.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from wxgate.cli.common import console
from wxgate.clock import iso8601

JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="Machine output: the API's JSON on one line (times in epoch seconds)"
    ),
]


def for_people(data: Any) -> Any:
    """`data` (a Struct, dict or list of them) as plain JSON values with each `*_at` or
    `not_before` number turned into ISO 8601 with the local zone."""
    plain = msgspec.to_builtins(data)
    return _times(plain)


def _times(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: iso8601(v, tz=None)
            if (k.endswith("_at") or k == "not_before") and isinstance(v, int | float)
            else _times(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_times(v) for v in value]
    return value


def emit(data: Any, as_json: bool) -> None:
    """Print `data` on stdout: one line of API JSON (`as_json`) or indented for people."""
    if as_json:
        text = msgspec.json.encode(data).decode()
    else:
        text = json.dumps(for_people(data), indent=2, ensure_ascii=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table whose every cell is printed whole: rich would otherwise shorten ids to fit the
    terminal, so the table grows wider than it instead (the terminal wraps it for display)."""
    table = Table(*headers)
    for row in rows:
        table.add_row(*row)
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    needed = sum(widths) + 3 * len(widths) + 1
    wide = console if needed <= console.width else Console(width=needed, soft_wrap=True)
    wide.print(table)

"""`--help` without a `<bool>` after flags.

typer (0.2x) prints each option's type beside it in `--help`, flags too: `--wait <bool>` reads
as if the flag took a value (`--wait true`), which it does not. Flags are shown bare instead;
with a typer that prints no types this changes nothing.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperOption


def hide_flag_types() -> None:
    """Make typer show no type for flag options (idempotent)."""
    original: Any = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_wxgate_flags_bare", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag:
            return None
        shown: str | None = original(self, ctx)
        return shown

    display_type_rich._wxgate_flags_bare = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]

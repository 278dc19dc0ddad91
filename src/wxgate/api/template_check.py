"""Template validation at accept time (an app's `validate`).

"types" (the default) checks typed keys' values by their names alone (`thing1` <= 20
characters, policy/template_values.py), with no template list and no I/O. "reject" and
"truncate" check against the template from the cached list (wechat/templates.py, no I/O once
loaded) with policy/template_rules.py, which applies the same value rules. A problem is a 400
naming the field (`data.keyword9`, `data.thing1.value`, `template_id`) and the rule; a
truncation is recorded in the message's `notes`, which GET /v1/messages/{id} shows. When the
list cannot be read, the values are still checked by key name, with a note saying the
template was not: validation never stops sending on its own failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from wxgate.api.errors import ApiError, invalid
from wxgate.models import Message, MessageKind, Recipient
from wxgate.policy.template_rules import (
    CompiledTemplate,
    TemplateViolation,
    check,
    check_names,
)
from wxgate.settings import AppSettings
from wxgate.wechat.templates import TemplateLookup

Data = dict[str, dict[str, str]]

# The modes that read the app's template list (the runtime loads lists only for them).
LISTED_MODES = frozenset({"reject", "truncate"})


class TemplateSource(Protocol):
    """wechat.templates.TemplateCatalog."""

    async def lookup(
        self, app: AppSettings, kind: MessageKind, template_id: str
    ) -> TemplateLookup: ...


def _unknown(app: AppSettings, kind: MessageKind, template_id: str) -> ApiError:
    where = {
        MessageKind.SUBSCRIBE: "subscribe",
        MessageKind.OA_SUBSCRIBE: "subscription notification",
    }.get(kind, "template message")
    return invalid(
        "template_id",
        f"{template_id!r} is not in app {app.name!r}'s {where} template list "
        "(WeChat would answer 40037)",
    )


def _note(problem: str) -> str:
    return f"template not checked: {problem}"


async def _template(
    source: TemplateSource | None, app: AppSettings, kind: MessageKind, template_id: str
) -> CompiledTemplate | str | None:
    """The template, or why it cannot be checked; None when the mode checks by key names
    only; 400 when WeChat does not know the template."""
    if app.validate not in LISTED_MODES or source is None:
        return None
    found = await source.lookup(app, kind, template_id)
    if found.template is not None:
        return found.template
    if found.unknown:
        raise _unknown(app, kind, template_id)
    return _note(found.problem or "no template list")


def _add_notes(message: Message, notes: Sequence[str]) -> None:
    message.notes = [*(message.notes or ()), *notes]


def _check(
    template: CompiledTemplate | str | None, kind: MessageKind, data: Data, mode: str
) -> tuple[Data, list[str] | None]:
    """Against the template when there is one, else by key names (mode "types" or no list)."""
    if isinstance(template, CompiledTemplate):
        return check(template, data, mode)
    return check_names(kind.value, data, "truncate" if mode == "truncate" else "reject")


async def checked_message(
    source: TemplateSource | None, app: AppSettings, message: Message
) -> Message:
    """`message` (a fresh one, changed in place) after the app's checks; raises a 400."""
    template = await _template(source, app, message.kind, message.template_id)
    if isinstance(template, str):
        _add_notes(message, (template,))
    try:
        data, notes = _check(template, message.kind, message.data, app.validate)
    except TemplateViolation as exc:
        raise invalid(exc.field, exc.reason) from None
    if notes is not None:
        message.data = data
        _add_notes(message, notes)
    return message


async def checked_batch(
    source: TemplateSource | None,
    app: AppSettings,
    messages: Sequence[Message],
    recipients: Sequence[Recipient],
    labels: Sequence[str] | None = None,
) -> None:
    """The app's checks on a batch's messages (changed in place; one per recipient, in order).

    Recipients without data of their own share one data object, checked once. A problem in
    a recipient's own field is named `recipients[i].data...` (or `{labels[i]}.data...`, say
    `line 7` in a streamed upload), one in the shared data `data...`.
    """
    if not messages:
        return
    first = messages[0]
    template = await _template(source, app, first.kind, first.template_id)
    if isinstance(template, str):
        for m in messages:
            _add_notes(m, (template,))
    # By identity of the data object (kept alive here, so an id is never reused meanwhile).
    done: dict[int, tuple[Data, Data, list[str] | None]] = {}
    for i, m in enumerate(messages):
        hit = done.get(id(m.data))
        if hit is None:
            try:
                data, notes = _check(template, m.kind, m.data, app.validate)
            except TemplateViolation as exc:
                label = labels[i] if labels is not None else f"recipients[{i}]"
                raise invalid(_batch_field(exc.field, recipients[i], label), exc.reason) from None
            done[id(m.data)] = (m.data, data, notes)
        else:
            _, data, notes = hit
        if notes is not None:
            m.data = data
            _add_notes(m, notes)


def _batch_field(field: str, recipient: Recipient, label: str) -> str:
    """`data.k...` names the shared data unless k came from this recipient's own data."""
    parts = field.split(".")
    own = recipient.data or {}
    if len(parts) > 1 and parts[1] in own:
        return f"{label}.{field}"
    return field

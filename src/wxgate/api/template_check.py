"""Template validation at accept time (an app's `validate = "reject" | "truncate"`).

The template comes from the cached list (wechat/templates.py, no I/O once loaded); the checks
are pure (policy/template_rules.py). A problem is a 400 naming the field (`data.keyword9`,
`data.thing1.value`, `template_id`); a truncation is recorded in the message's `notes`, which
GET /v1/messages/{id} shows. When the list cannot be read, the message goes through unchecked
with a note saying so: validation never stops sending on its own failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from wxgate.api.errors import ApiError, invalid
from wxgate.models import Message, MessageKind, Recipient
from wxgate.policy.template_rules import CompiledTemplate, TemplateViolation, check
from wxgate.settings import AppSettings
from wxgate.wechat.templates import TemplateLookup

Data = dict[str, dict[str, str]]


class TemplateSource(Protocol):
    """wechat.templates.TemplateCatalog."""

    async def lookup(
        self, app: AppSettings, kind: MessageKind, template_id: str
    ) -> TemplateLookup: ...


def _unknown(app: AppSettings, kind: MessageKind, template_id: str) -> ApiError:
    where = "subscribe" if kind is MessageKind.SUBSCRIBE else "template message"
    return invalid(
        "template_id",
        f"{template_id!r} is not in app {app.name!r}'s {where} template list "
        "(WeChat would answer 40037)",
    )


def _note(problem: str) -> str:
    return f"template not checked: {problem}"


async def _template(
    source: TemplateSource, app: AppSettings, kind: MessageKind, template_id: str
) -> CompiledTemplate | str:
    """The template, or why it cannot be checked; 400 when WeChat does not know it."""
    found = await source.lookup(app, kind, template_id)
    if found.template is not None:
        return found.template
    if found.unknown:
        raise _unknown(app, kind, template_id)
    return _note(found.problem or "no template list")


def _add_notes(message: Message, notes: Sequence[str]) -> None:
    message.notes = [*(message.notes or ()), *notes]


async def checked_message(source: TemplateSource, app: AppSettings, message: Message) -> Message:
    """`message` (a fresh one, changed in place) after the app's checks; raises a 400."""
    template = await _template(source, app, message.kind, message.template_id)
    if isinstance(template, str):
        _add_notes(message, (template,))
        return message
    try:
        data, notes = check(template, message.data, app.validate)
    except TemplateViolation as exc:
        raise invalid(exc.field, exc.reason) from None
    if notes is not None:
        message.data = data
        _add_notes(message, notes)
    return message


async def checked_batch(
    source: TemplateSource,
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
        return
    # By identity of the data object (kept alive here, so an id is never reused meanwhile).
    done: dict[int, tuple[Data, Data, list[str] | None]] = {}
    for i, m in enumerate(messages):
        hit = done.get(id(m.data))
        if hit is None:
            try:
                data, notes = check(template, m.data, app.validate)
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

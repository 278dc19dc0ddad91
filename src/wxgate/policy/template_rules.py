"""Template checks at accept time: are `data`'s keys the template's placeholders, and does
each value fit its keyword type? Pure functions (no I/O), over a compiled template from the
app's template list, or over the key names alone (`check_names`, `validate = "types"`).

Whether a value of a typed key (`thing1`, `phrase3`...) is acceptable is
policy/template_values.py's: WeChat refuses a bad one with 47003 for subscribe messages and
category templates alike (docs/wechat-api.md §2.3, §3.1). This module adds what needs the
template or the mode:
- the template's keys: an unknown key is named; a subscribe message needs every key;
- Official Account old-style fields (§2.2): any main field that is not typed (`keyword1`)
  shows at most 20 characters on one line, and WeChat cuts it itself; `first` and `remark`
  are dropped by WeChat since 2023-05-04 and are let through. These are checked only
  against a template list ("reject" / "truncate"), never from key names alone.

Modes: "reject" raises TemplateViolation naming the field; "truncate" does what WxJava does
(since binarywang/WxJava#3439): keep limit - 3 characters and add "..." (a phrase or a
short_thing, too short for that, is cut to its limit), replaces line breaks in template
fields with spaces, and says so in the notes. A value that cutting cannot fix (a const, a
number, a phone number, a time) is rejected in both modes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from wxgate.policy.template_values import keyword_type as typed_key
from wxgate.policy.template_values import value_problem

Data = dict[str, dict[str, str]]  # WeChat's shape: {key: {"value": ..., "color"?: ...}}
Mode = str  # "reject" | "truncate"

TEMPLATE = "template"
SUBSCRIBE = "subscribe"
ELLIPSIS = "..."
# Kept by callers of the old template format; WeChat drops them, so they are not errors.
LEGACY_OA_KEYS = frozenset({"first", "remark"})
OA_MAIN_FIELD_LIMIT = 20

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_]*)\.DATA\s*\}\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LINE_BREAK = re.compile(r"[\r\n]+")


class TemplateViolation(Exception):
    """`data` does not fit the template: `field` is the dotted path ("data.thing1.value")."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Rule:
    """How one keyword type is cut. `limit` is in characters (None: no length limit); `cut`
    is how an over-long value is truncated."""

    type: str
    limit: int | None = None
    cut: str | None = "ellipsis"  # "ellipsis" (N-3 + "..."), "hard" (first N), None (reject)
    ascii_limit: int | None = None  # a different limit for all-ASCII values (name)
    single_line: bool = False  # OA fields: no line breaks (replaced by spaces in truncate)


# Limits here say how "truncate" cuts a value; whether a value is acceptable at all is
# policy/template_values.py's (checked last, on the value that would be sent). A const, a
# phone number or a car number is never cut: cutting cannot make it right (cut=None).
_SUBSCRIBE_RULES: dict[str, Rule] = {
    "thing": Rule("thing", 20),
    "short_thing": Rule("short_thing", 5, cut="hard"),
    "number": Rule("number", 32, cut=None),
    "letter": Rule("letter", 32, cut=None),
    "symbol": Rule("symbol", 5, cut=None),
    "character_string": Rule("character_string", 32),
    "phone_number": Rule("phone_number", 17, cut=None),
    "car_number": Rule("car_number", 8, cut=None),
    "name": Rule("name", 10, ascii_limit=20),
    "phrase": Rule("phrase", 5, cut="hard"),
    "const": Rule("const", 20, cut=None),
    "enum": Rule("enum", 20, cut=None),
    "enum_string": Rule("enum_string", 20, cut=None),
    "time": Rule("time", cut=None),
    "date": Rule("date", cut=None),
    "amount": Rule("amount", cut=None),
}
_OA_RULES: dict[str, Rule] = {
    t: Rule(r.type, r.limit, r.cut, r.ascii_limit, single_line=True)
    for t, r in _SUBSCRIBE_RULES.items()
}
_OA_MAIN = Rule("field", OA_MAIN_FIELD_LIMIT, single_line=True)
_OA_LEGACY = Rule("legacy")


def keyword_type(key: str) -> str:
    """`thing1` -> `thing`, `number01` -> `number`."""
    return key.rstrip("0123456789")


@functools.lru_cache(maxsize=4096)  # keys repeat: a few per template, checked per message
def rule_for(kind: str, key: str) -> Rule:
    if kind != TEMPLATE:  # subscribe, and any later kind of subscription message
        return _SUBSCRIBE_RULES.get(keyword_type(key)) or Rule(keyword_type(key))
    if key in LEGACY_OA_KEYS:
        return _OA_LEGACY
    return _OA_RULES.get(keyword_type(key)) or _OA_MAIN


def placeholders(content: str) -> tuple[str, ...]:
    """The keys of "{{thing1.DATA}}" placeholders in a template's content, in order, once each."""
    return tuple(dict.fromkeys(m.group(1) for m in _PLACEHOLDER.finditer(content)))


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """One template with each of its keys' rules looked up once (checks run per message)."""

    template_id: str
    kind: str  # TEMPLATE | SUBSCRIBE
    keys: tuple[str, ...]
    title: str = ""
    rules: dict[str, Rule] = field(default_factory=dict)

    @classmethod
    def of(
        cls, template_id: str, kind: str, keys: Iterable[str], title: str = ""
    ) -> CompiledTemplate:
        ordered = tuple(dict.fromkeys(keys))
        return cls(template_id, kind, ordered, title, {k: rule_for(kind, k) for k in ordered})


def check_names(
    kind: str, data: Data, mode: Mode, prefix: str = "data"
) -> tuple[Data, list[str] | None]:
    """`check` without a template: only typed keys, each by the rule its name gives. Keys
    that are not typed (`first`, `keyword1`) pass: WeChat only cuts those on screen."""
    subscribe = kind != TEMPLATE
    truncate = mode == "truncate"
    out: Data | None = None
    notes: list[str] | None = None
    for key, item in data.items():
        if typed_key(key) is None:
            continue
        value = item["value"]
        rule = rule_for(kind, key)
        new, note = _check_value(rule, key, value, subscribe, truncate, f"{prefix}.{key}.value")
        if note is not None:
            if out is None:
                out = dict(data)
            out[key] = {**item, "value": new}
            if notes is None:
                notes = []
            notes.append(f"{prefix}.{key}: {note}")
    return (data if out is None else out), notes


def _length_limit(rule: Rule, value: str) -> int | None:
    if rule.ascii_limit is not None and value.isascii():
        return rule.ascii_limit
    return rule.limit


def _cut(rule: Rule, value: str, limit: int) -> str:
    if rule.cut == "hard" or limit <= len(ELLIPSIS):
        return value[:limit]
    return value[: limit - len(ELLIPSIS)] + ELLIPSIS


def check(
    template: CompiledTemplate, data: Data, mode: Mode, prefix: str = "data"
) -> tuple[Data, list[str] | None]:
    """(data to send, notes) or TemplateViolation. `data` is never changed in place: a
    truncation returns a new mapping, and the same object comes back when nothing changed."""
    rules = template.rules
    subscribe = template.kind != TEMPLATE
    truncate = mode == "truncate"
    out: Data | None = None
    notes: list[str] | None = None
    for key, item in data.items():
        rule = rules.get(key)
        if rule is None:
            if not subscribe and key in LEGACY_OA_KEYS:
                continue  # WeChat drops them since 2023; old callers still send them
            fields = ", ".join(template.keys) or "none"
            raise TemplateViolation(
                f"{prefix}.{key}",
                f"not a field of template {template.template_id!r} (its fields: {fields})",
            )
        value = item["value"]
        new, note = _check_value(rule, key, value, subscribe, truncate, f"{prefix}.{key}.value")
        if note is not None:
            if out is None:
                out = dict(data)
            out[key] = {**item, "value": new}
            if notes is None:
                notes = []
            notes.append(f"{prefix}.{key}: {note}")
    if subscribe and len(data) < len(rules):
        missing = [k for k in template.keys if k not in data]
        raise TemplateViolation(
            f"{prefix}.{missing[0]}",
            f"missing: template {template.template_id!r} needs every field "
            f"({', '.join(missing)} not given; WeChat answers 47003 for an empty one)",
        )
    return (data if out is None else out), notes


def _check_value(
    rule: Rule, key: str, value: str, subscribe: bool, truncate: bool, where: str
) -> tuple[str, str | None]:
    """(value to send, what was changed or None)."""
    if rule is _OA_LEGACY:
        return value, None
    if subscribe and not value:
        raise TemplateViolation(where, "is empty (WeChat answers 47003)")
    changes: list[str] = []
    if rule.single_line and _LINE_BREAK.search(value):
        if not truncate:
            raise TemplateViolation(
                where,
                value_problem(key, value) or "line breaks are not shown in template messages",
            )
        value = _LINE_BREAK.sub(" ", value)
        changes.append("line breaks replaced by spaces")
    if _CONTROL.search(value):
        raise TemplateViolation(where, value_problem(key, value) or "contains a control character")
    limit = _length_limit(rule, value)
    if limit is not None and len(value) > limit:
        if not truncate or rule.cut is None:
            why = value_problem(key, value) or f"a {rule.type} value takes at most {limit}"
            raise TemplateViolation(where, f"{len(value)} characters; {why}")
        cut = _cut(rule, value, limit)
        kept = (
            f"the first {len(cut)}"
            if cut == value[:limit]
            else f"the first {len(cut) - len(ELLIPSIS)} + '...'"
        )
        changes.append(
            f"truncated from {len(value)} to {len(cut)} characters "
            f"({rule.type} limit {limit}; kept {kept})"
        )
        value = cut
    problem = value_problem(key, value)
    if problem is not None:
        raise TemplateViolation(where, problem)
    return value, ("; ".join(changes) if changes else None)

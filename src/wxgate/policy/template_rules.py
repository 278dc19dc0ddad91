"""Template checks at accept time: are `data`'s keys the template's placeholders, and does
each value fit its keyword type? Pure functions over a compiled template (no I/O).

The limits (docs/wechat-api.md):
- Subscribe messages (§3.1): the type is the key without its index (`thing1` -> thing):
  thing <= 20 chars, number <= 32 digits, letter <= 32 letters, symbol <= 5, character_string
  <= 32 printable ASCII, time/date a time, amount a currency sign + <= 10 digits, phone_number
  <= 17, car_number <= 8, name <= 10 CJK or 20 letters, phrase <= 5; never empty, never a
  control character. WeChat rejects these with 47003.
- Official Account template messages (§2.2, §2.3): category-template keys by prefix
  (thing 20, character_string 32, phone_number 17, car_number 8, const 20), any other main
  field 20, no line breaks; `first` and `remark` are dropped by WeChat since 2023-05-04 and
  are let through. WeChat truncates these itself rather than rejecting them.

Modes: "reject" raises TemplateViolation naming the field; "truncate" does what WxJava does
(since binarywang/WxJava#3439): keep limit - 3 characters and add "..." (a phrase, too short
for that, is cut to its limit), replaces line breaks in template fields with spaces, and says
so in the notes. A value of the wrong form (letters in a number) is rejected in both modes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

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
_NUMBER = re.compile(r"[0-9]{1,32}(\.[0-9]+)?")
_LETTER = re.compile(r"[A-Za-z]+")
_CHARSTR = re.compile(r"[\x21-\x7e]+")
_AMOUNT = re.compile(r"[¥￥$€£]?[0-9]{1,10}(\.[0-9]{1,2})?元?")
_PHONE = re.compile(r"[0-9+\-\s().]+")


class TemplateViolation(Exception):
    """`data` does not fit the template: `field` is the dotted path ("data.thing1.value")."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Rule:
    """What one keyword type allows. `limit` is in characters (None: no length limit);
    `form` checks everything but the length; `cut` is how an over-long value is truncated."""

    type: str
    limit: int | None = None
    form: Callable[[str], bool] | None = None
    form_hint: str = ""
    cut: str | None = "ellipsis"  # "ellipsis" (N-3 + "..."), "hard" (first N), None (reject)
    ascii_limit: int | None = None  # a different limit for all-ASCII values (name)
    single_line: bool = False  # OA fields: no line breaks (replaced by spaces in truncate)


def _matches(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda v: pattern.fullmatch(v) is not None


def _digit(v: str) -> bool:
    return any(c.isdigit() for c in v)


def _symbols(v: str) -> bool:
    return not any(c.isalnum() for c in v)


_SUBSCRIBE_RULES: dict[str, Rule] = {
    "thing": Rule("thing", 20),
    "number": Rule("number", 32, _matches(_NUMBER), "digits, maybe with decimals", None),
    "letter": Rule("letter", 32, _matches(_LETTER), "letters only", None),
    "symbol": Rule("symbol", 5, _symbols, "symbols only", None),
    "character_string": Rule(
        "character_string", 32, _matches(_CHARSTR), "digits, letters and symbols"
    ),
    "time": Rule("time", None, _digit, "a time, e.g. 2024-05-01 12:30"),
    "date": Rule("date", None, _digit, "a date, e.g. 2024-05-01"),
    "amount": Rule("amount", None, _matches(_AMOUNT), "an amount, e.g. ¥12.50 or 12.50元"),
    "phone_number": Rule("phone_number", 17, _matches(_PHONE), "a phone number"),
    "car_number": Rule("car_number", 8),
    "name": Rule("name", 10, ascii_limit=20),
    "phrase": Rule("phrase", 5, cut="hard"),
}
_OA_RULES: dict[str, Rule] = {
    "thing": Rule("thing", 20, single_line=True),
    "character_string": Rule("character_string", 32, single_line=True),
    "phone_number": Rule("phone_number", 17, single_line=True),
    "car_number": Rule("car_number", 8, single_line=True),
    "const": Rule("const", 20, single_line=True),
}
_OA_MAIN = Rule("field", OA_MAIN_FIELD_LIMIT, single_line=True)
_OA_LEGACY = Rule("legacy")


def keyword_type(key: str) -> str:
    """`thing1` -> `thing`, `number01` -> `number`."""
    return key.rstrip("0123456789")


def rule_for(kind: str, key: str) -> Rule:
    if kind == SUBSCRIBE:
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
    subscribe = template.kind == SUBSCRIBE
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
        new, note = _check_value(rule, value, subscribe, truncate, f"{prefix}.{key}.value")
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
    rule: Rule, value: str, subscribe: bool, truncate: bool, where: str
) -> tuple[str, str | None]:
    """(value to send, what was changed or None)."""
    if rule is _OA_LEGACY:
        return value, None
    if subscribe and not value:
        raise TemplateViolation(where, "is empty (WeChat answers 47003)")
    changes: list[str] = []
    if rule.single_line and _LINE_BREAK.search(value):
        if not truncate:
            raise TemplateViolation(where, "line breaks are not shown in template messages")
        value = _LINE_BREAK.sub(" ", value)
        changes.append("line breaks replaced by spaces")
    if _CONTROL.search(value):
        raise TemplateViolation(where, "contains a control character")
    limit = _length_limit(rule, value)
    if limit is not None and len(value) > limit:
        if not truncate or rule.cut is None:
            raise TemplateViolation(
                where, f"{len(value)} characters; a {rule.type} value takes at most {limit}"
            )
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
    if rule.form is not None and not rule.form(value):
        raise TemplateViolation(where, f"not a valid {rule.type}: expected {rule.form_hint}")
    return value, ("; ".join(changes) if changes else None)

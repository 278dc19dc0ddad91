"""Quiet hours at ingest as pure functions (api/intake.py) on a fixed clock: what a message
accepted at 23:00 Shanghai time is filed as, and the priority values accepted."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from wxgate.api.errors import ApiError
from wxgate.api.intake import batch_from, message_from
from wxgate.models import BatchIn, MessageIn, Recipient, Status
from wxgate.settings import AppSettings

SH = ZoneInfo("Asia/Shanghai")
NIGHT = datetime(2024, 3, 1, 23, 0, tzinfo=SH).timestamp()
MORNING = datetime(2024, 3, 2, 8, 0, tzinfo=SH).timestamp()
APP = AppSettings(name="shop", appid="wx", secret="s", quiet_hours="22:00-08:00")
LOUD = AppSettings(name="loud", appid="wx2", secret="s")


def _msg(app: AppSettings = APP, now: float = NIGHT, **fields: object) -> tuple[float, Status, str]:
    body = MessageIn(touser="o_1", template_id="t", data={"k": "v"}, **fields)  # type: ignore[arg-type]
    m = message_from(body, app, now, "id1", None)
    return m.not_before, m.status, m.priority


def test_a_message_sent_at_23_is_held_until_08() -> None:
    assert _msg() == (MORNING, Status.QUEUED, "normal")
    assert _msg(priority="low")[0] == MORNING


def test_urgent_goes_now_and_high_means_urgent() -> None:
    assert _msg(priority="urgent") == (NIGHT, Status.QUEUED, "urgent")
    assert _msg(priority="high") == (NIGHT, Status.QUEUED, "urgent")


def test_no_quiet_hours_no_hold() -> None:
    assert _msg(LOUD) == (NIGHT, Status.QUEUED, "normal")


def test_daytime_and_send_at() -> None:
    noon = datetime(2024, 3, 2, 12, 0, tzinfo=SH).timestamp()
    assert _msg(now=noon)[0] == noon
    # Scheduled at noon for 23:30 the same day: held to the next 08:00.
    late = datetime(2024, 3, 2, 23, 30, tzinfo=SH).timestamp()
    next_morning = datetime(2024, 3, 3, 8, 0, tzinfo=SH).timestamp()
    assert _msg(now=noon, send_at=late)[0] == next_morning


def test_a_deadline_before_the_end_expires_it_at_once() -> None:
    assert _msg(expire_at=MORNING - 3600)[1] is Status.EXPIRED
    assert _msg(expire_at=MORNING + 3600)[1] is Status.QUEUED
    assert _msg(priority="urgent", expire_at=MORNING - 3600)[1] is Status.QUEUED


def test_unknown_priority_is_400() -> None:
    with pytest.raises(ApiError) as err:
        _msg(priority="asap")
    assert err.value.status == 400 and err.value.field == "priority"
    assert "urgent" in err.value.message


def test_batches_are_held_too_unless_urgent() -> None:
    body = BatchIn(template_id="t", recipients=[Recipient("o_1"), Recipient("o_2")])
    _, messages = batch_from(body, APP, NIGHT, "b1", 10)
    assert {m.not_before for m in messages} == {MORNING}
    body = BatchIn(template_id="t", recipients=[Recipient("o_1")], priority="urgent")
    _, messages = batch_from(body, APP, NIGHT, "b2", 10)
    assert messages[0].not_before == NIGHT and messages[0].priority == "urgent"

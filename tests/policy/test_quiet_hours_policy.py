"""Quiet hours as pure time arithmetic: windows across midnight, within a day, time zones,
priorities and deadlines. Times are built in the app's zone, so no test depends on the
machine's zone or the wall clock."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from wxgate.errors import ConfigError
from wxgate.policy.quiet_hours import QuietHours, for_app, may_wait
from wxgate.settings import AppSettings, from_dict

SH = ZoneInfo("Asia/Shanghai")
NIGHT = QuietHours.parse("22:00-08:00", "Asia/Shanghai")


def at(day: int, hour: int, minute: int = 0, tz: ZoneInfo = SH, month: int = 3) -> float:
    return datetime(2024, month, day, hour, minute, tzinfo=tz).timestamp()


def test_a_message_at_23_is_held_until_08_next_morning() -> None:
    assert NIGHT.end_of(at(1, 23)) == at(2, 8)
    assert NIGHT.hold(at(1, 23), "normal", None) == (at(2, 8), False)


@pytest.mark.parametrize(
    ("hour", "minute", "end"),
    [
        (22, 0, at(2, 8)),  # the start is inside
        (23, 59, at(2, 8)),
        (0, 0, at(2, 8)),  # after midnight: ends the same morning
        (7, 59, at(2, 8)),
    ],
)
def test_inside_the_window(hour: int, minute: int, end: float) -> None:
    day = 1 if hour >= 22 else 2
    assert NIGHT.end_of(at(day, hour, minute)) == end


@pytest.mark.parametrize(("hour", "minute"), [(8, 0), (12, 0), (21, 59)])
def test_outside_the_window(hour: int, minute: int) -> None:
    t = at(2, hour, minute)
    assert NIGHT.end_of(t) is None
    assert NIGHT.hold(t, "low", None) == (t, False)


def test_a_window_within_one_day() -> None:
    lunch = QuietHours.parse("12:00-14:00", "Asia/Shanghai")
    assert lunch.end_of(at(1, 12, 30)) == at(1, 14)
    assert lunch.end_of(at(1, 14)) is None
    assert lunch.end_of(at(1, 11, 59)) is None
    assert lunch.end_of(at(1, 23)) is None


def test_the_window_is_in_the_apps_time_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    night = QuietHours.parse("22:00-08:00", "Europe/Berlin")
    # 23:00 in Shanghai is 16:00 in Berlin (CET): quiet in Shanghai only.
    t = at(1, 23)
    assert NIGHT.end_of(t) == at(2, 8)
    assert night.end_of(t) is None
    # 23:00 in Berlin is 06:00 in Shanghai: quiet in both, each until its own 08:00.
    t = at(1, 23, tz=berlin)
    assert night.end_of(t) == at(2, 8, tz=berlin)
    assert NIGHT.end_of(t) == at(2, 8)


def test_daylight_saving_change_inside_the_window() -> None:
    """Berlin springs forward on 2024-03-31 02:00 -> 03:00: the night is an hour shorter, and
    the end is still 08:00 local."""
    berlin = ZoneInfo("Europe/Berlin")
    night = QuietHours.parse("22:00-08:00", "Europe/Berlin")
    start = at(30, 23, tz=berlin)
    end = night.end_of(start)
    assert end == at(31, 8, tz=berlin)
    assert end is not None and end - start == 8 * 3600


def test_urgent_messages_are_never_held() -> None:
    assert not may_wait("urgent") and not may_wait("high")
    assert may_wait("normal") and may_wait("low")
    assert NIGHT.hold(at(1, 23), "urgent", None) == (at(1, 23), False)


def test_held_past_its_deadline_it_expires_instead() -> None:
    assert NIGHT.hold(at(1, 23), "normal", at(2, 6)) == (at(2, 8), True)
    assert NIGHT.hold(at(1, 23), "normal", at(2, 8)) == (at(2, 8), True)  # at the end: too late
    assert NIGHT.hold(at(1, 23), "normal", at(2, 9)) == (at(2, 8), False)
    # Urgent ones are not held, so their deadline is not in question.
    assert NIGHT.hold(at(1, 23), "urgent", at(2, 6)) == (at(1, 23), False)


def test_for_app_parses_once() -> None:
    app = AppSettings(name="a", appid="wx", secret="s", quiet_hours="22:00-08:00")
    assert for_app(app) is for_app(app)
    assert for_app(AppSettings(name="b", appid="wx", secret="s")) is None
    assert "22:00-08:00 Asia/Shanghai" in repr(for_app(app))


@pytest.mark.parametrize(
    ("quiet", "zone", "needle"),
    [
        ("22-08", "Asia/Shanghai", "HH:MM-HH:MM"),
        ("24:00-08:00", "Asia/Shanghai", "HH:MM-HH:MM"),
        ("22:00-22:00", "Asia/Shanghai", "empty"),
        ("22:00-08:00", "Mars/Olympus", "unknown time zone"),
    ],
)
def test_bad_settings_are_refused_at_load(quiet: str, zone: str, needle: str) -> None:
    app = {"name": "a", "appid": "wx", "secret": "s", "quiet_hours": quiet, "timezone": zone}
    with pytest.raises(ConfigError, match=needle):
        from_dict({"apps": [app]})

"""Exponential backoff with full jitter."""

from __future__ import annotations

import pytest

from wxgate.policy.backoff import delay_s


@pytest.mark.parametrize(("attempt", "expected"), [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0)])
def test_ceiling_doubles_per_attempt(attempt: int, expected: float) -> None:
    assert delay_s(attempt, base_s=1.0, cap_s=300.0, rand=lambda: 1.0) == expected


def test_capped() -> None:
    assert delay_s(20, base_s=1.0, cap_s=300.0, rand=lambda: 1.0) == 300.0


def test_full_jitter_spans_zero_to_ceiling() -> None:
    assert delay_s(3, 1.0, 300.0, rand=lambda: 0.0) == 0.0
    assert delay_s(3, 1.0, 300.0, rand=lambda: 0.25) == 1.0


def test_huge_attempt_does_not_overflow() -> None:
    assert delay_s(10_000, 0.5, 60.0, rand=lambda: 1.0) == 60.0


def test_attempt_zero_or_negative_is_treated_as_first() -> None:
    assert delay_s(0, 2.0, 60.0, rand=lambda: 1.0) == 2.0
    assert delay_s(-3, 2.0, 60.0, rand=lambda: 1.0) == 2.0


def test_default_rand_stays_in_range() -> None:
    for attempt in range(1, 12):
        assert 0.0 <= delay_s(attempt, 1.0, 30.0) <= min(30.0, 2.0 ** (attempt - 1))

"""WarningBudget: a flood of warnings from one connection becomes a bounded number of lines
(the first few in full, one notice, then periodic summaries with counts); fake clock."""

from __future__ import annotations

import logging

import pytest

from voxbus_common.log_limit import WarningBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "test.budget"]


def budget(clock: Clock, limit: int = 3, interval_s: float = 10.0,
           refill: bool = False) -> WarningBudget:
    return WarningBudget(logging.getLogger("test.budget"), limit, interval_s, refill=refill,
                         clock=clock, extra={"edge": "test"})


def test_the_first_warnings_are_logged_in_full_then_one_notice(
        caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    b = budget(clock)
    with caplog.at_level(logging.WARNING, "test.budget"):
        for i in range(5000):
            b.warning("bad frame %d", i, extra={"bytes": i})
    records = lines(caplog)
    assert [r.getMessage() for r in records] == [
        "bad frame 0", "bad frame 1", "bad frame 2", "further warnings suppressed"]
    assert all(r.levelno == logging.WARNING and r.edge == "test"  # type: ignore[attr-defined]
               for r in records)
    assert records[1].bytes == 1  # type: ignore[attr-defined]
    assert b.suppressed == b.suppressed_total == 4997


def test_one_summary_per_interval_with_the_count(caplog: pytest.LogCaptureFixture,
                                                 clock: Clock) -> None:
    b = budget(clock, limit=1, interval_s=10.0)
    with caplog.at_level(logging.WARNING, "test.budget"):
        for _ in range(100):  # t=1000: 1 logged, 99 suppressed
            b.warning("bad")
        clock.now += 5
        for _ in range(50):  # within the interval: counted only
            b.warning("bad")
        clock.now += 5  # the interval has passed: the next warning writes the summary
        b.warning("bad")
        for _ in range(20):
            b.warning("bad")
        b.flush()  # the connection ends: the rest is reported
        b.flush()  # nothing more to report
    records = lines(caplog)
    assert [r.getMessage() for r in records] == [
        "bad", "further warnings suppressed", "warnings suppressed", "warnings suppressed"]
    assert records[2].suppressed == 149  # type: ignore[attr-defined]
    assert records[2].over_s == 10.0  # type: ignore[attr-defined]
    assert records[3].suppressed == 21  # type: ignore[attr-defined]
    assert b.suppressed_total == 170


def test_flush_without_suppressed_warnings_logs_nothing(caplog: pytest.LogCaptureFixture,
                                                        clock: Clock) -> None:
    b = budget(clock)
    with caplog.at_level(logging.WARNING, "test.budget"):
        b.warning("one")
        b.flush()
    assert [r.getMessage() for r in lines(caplog)] == ["one"]


def test_a_refilling_budget_logs_in_full_again_after_an_interval(
        caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    b = budget(clock, limit=2, interval_s=60.0, refill=True)
    with caplog.at_level(logging.WARNING, "test.budget"):
        for _ in range(10):
            b.warning("bad request")
        clock.now += 60
        for _ in range(10):
            b.warning("bad request")
    assert [r.getMessage() for r in lines(caplog)] == [
        "bad request", "bad request", "further warnings suppressed",
        "warnings suppressed",  # 8 of the first minute
        "bad request", "bad request", "further warnings suppressed"]
    assert b.admit() is False


def test_admit_alone_counts_without_logging(caplog: pytest.LogCaptureFixture,
                                            clock: Clock) -> None:
    b = budget(clock, limit=1)
    with caplog.at_level(logging.WARNING, "test.budget"):
        assert b.admit() is True
        assert b.admit() is False
    assert [r.getMessage() for r in lines(caplog)] == ["further warnings suppressed"]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        WarningBudget(logging.getLogger("x"), limit=-1)
    with pytest.raises(ValueError):
        WarningBudget(logging.getLogger("x"), interval_s=0)

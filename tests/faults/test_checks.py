"""The fault suite's answer checks flag what they are meant to (no cluster needed): a 500 or a slow
answer during an outage, a refused connection while the api was up, a request cut off by SIGTERM,
and they accept 503 app.unavailable, load shedding and a killed worker's lost requests."""

from __future__ import annotations

from typing import Any

from tests.faults.checks import Report, Window, answers_outside, outage_answers
from tests.faults.load import Call, Load

PROBLEM = "application/problem+json"


def _load(*calls: Call) -> Any:
    load = Load.__new__(Load)
    load.calls = list(calls)
    return load


def _call(started: float, seconds: float, status: int | None, code: str | None = None) -> Call:
    return Call("x", started, started + seconds, status, None if status else "ConnectError", code, PROBLEM)


def test_outage_answers_flag_a_500_a_slow_503_and_a_refused_connection_while_the_api_is_up() -> None:
    w = Window(fault_at=10.0, recover_at=20.0, recovered_at=21.0)
    report = Report("t")
    outage_answers(
        report,
        _load(
            _call(11, 0.2, 503, "app.unavailable"),
            _call(12, 0.1, 500, "app.error"),
            _call(13, 1.5, 503, "app.unavailable"),
            _call(14, 0.01, None),
            _call(15, 0.1, 503, "app.overloaded"),
            _call(25, 3.0, 500, "app.error"),  # after the window: not an outage answer
        ),
        w,
    )
    assert report.counts["requests during the outage"] == 5
    assert len(report.problems) == 3, report.problems
    assert any("longer than 1 s" in p for p in report.problems)
    assert any("not 503 app.unavailable" in p and "500" in p for p in report.problems)
    assert any("no answer while the api was up" in p for p in report.problems)


def test_outage_answers_accept_fast_503s_and_refusals_while_the_api_is_down() -> None:
    w = Window(fault_at=10.0, recover_at=20.0, recovered_at=30.0, api_down=True)
    report = Report("t")
    outage_answers(
        report, _load(_call(11, 0.2, 503, "app.unavailable"), _call(12, 0.01, None), _call(25, 0.01, None)), w
    )
    assert report.problems == []


def test_sigterm_must_let_requests_in_flight_finish_a_killed_worker_may_lose_them() -> None:
    cut = _call(9.5, 1.0, None)  # in flight at 10.0, no answer
    before = _call(1, 0.2, 200)
    graceful = Report("sigterm")
    answers_outside(
        graceful, _load(before, cut), Window(fault_at=10.0, recover_at=12, recovered_at=20), graceful=True
    )
    assert any("in flight" in p for p in graceful.problems)
    killed = Report("kill")
    answers_outside(
        killed,
        _load(before, cut),
        Window(fault_at=10.0, recover_at=10, recovered_at=10, inflight_lost_ok=True),
    )
    assert killed.problems == []


def test_a_5xx_after_recovery_is_flagged_shedding_is_not() -> None:
    w = Window(fault_at=10.0, recover_at=20.0, recovered_at=21.0)
    report = Report("t")
    answers_outside(report, _load(_call(30, 0.1, 503, "app.overloaded"), _call(31, 0.1, 502, "app.error")), w)
    assert len(report.problems) == 1 and "502 app.error" in report.problems[0], report.problems


def test_a_500_while_the_dependency_recovers_is_flagged_503_unavailable_is_not() -> None:
    w = Window(fault_at=10.0, recover_at=20.0, recovered_at=21.0)
    report = Report("t")
    answers_outside(
        report, _load(_call(20.5, 0.1, 503, "app.unavailable"), _call(21.5, 0.1, 500, "app.internal")), w
    )
    assert len(report.problems) == 1 and "500 app.internal" in report.problems[0], report.problems
    assert report.counts["  5xx other than 503 while recovering"] == 1

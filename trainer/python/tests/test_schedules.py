"""The p schedules (muonscope/schedules.py) against the values test/fixtures/generate_optim.py recorded,
their validation (errors name the field and carry the TS code, as common/schedules.ts), and the timeline.

Run: .venv/bin/python -m pytest trainer/python/tests/test_schedules.py
"""
from __future__ import annotations

import json

import pytest

from fixtures import load_index
from muonscope import MuonscopeValueError, ScheduleTimeline, schedule_value, validate_schedule

SCHEDULES = load_index("optim")["schedules"]


@pytest.mark.parametrize("case", SCHEDULES, ids=lambda c: json.dumps(c["spec"]))
def test_every_schedule_type_matches_the_recorded_values(case):
    validate_schedule(case["spec"])
    for q, p in case["values"]:
        assert abs(schedule_value(case["spec"], q) - p) <= 1e-12, (q, p)


def test_progress_is_clamped_and_reversed_runs_backwards():
    lin = {"type": "linear", "from": 0.5, "to": -0.25}
    assert schedule_value(lin, -1) == 0.5 and schedule_value(lin, 2) == -0.25
    assert schedule_value({"type": "reversed", "of": lin}, 0.25) == schedule_value(lin, 0.75)
    pw = {"type": "piecewise", "points": [[0.2, 0.3], [0.7, -0.1]]}
    assert schedule_value(pw, 0.0) == 0.3  # the first point's p before it
    assert schedule_value(pw, 0.7) == -0.1


def refused(spec, code, field):
    with pytest.raises(ValueError) as info:
        validate_schedule(spec)
    e = info.value
    assert isinstance(e, MuonscopeValueError) and e.code == code, (e.code, str(e))
    assert str(e).startswith(field + ":") or str(e).startswith(field + " "), str(e)
    return str(e)


@pytest.mark.parametrize("spec,code,field", [
    ({"type": "exponential"}, "UNKNOWN_SCHEDULE", "schedule"),
    ({"type": "reversed", "of": {"type": "step"}}, "UNKNOWN_SCHEDULE", "schedule.of"),
    ({"type": "reversed", "of": {"type": "reversed", "of": {"type": "constant", "p": 0}}}, "UNKNOWN_SCHEDULE", "schedule.of"),
    ("constant", "INVALID_HYPERPARAMETER", "schedule"),
    ({"type": "constant", "p": 1.5}, "P_OUT_OF_RANGE", "schedule.p"),
    ({"type": "linear", "from": 0, "to": -1.1}, "P_OUT_OF_RANGE", "schedule.to"),
    ({"type": "cosine", "from": 2, "to": 0}, "P_OUT_OF_RANGE", "schedule.from"),
    ({"type": "piecewise", "points": [[0, 0], [0.5, -3]]}, "P_OUT_OF_RANGE", "schedule.points[1]"),
    ({"type": "logistic", "pMax": 1.5, "pMin": 0, "tau": 0.5, "width": 0.01}, "P_OUT_OF_RANGE", "schedule"),
    ({"type": "reversed", "of": {"type": "constant", "p": 1.2}}, "P_OUT_OF_RANGE", "schedule.of.p"),
    ({"type": "piecewise", "points": [[0.5, 0], [0.5, 0.1]]}, "INVALID_HYPERPARAMETER", "schedule.points[1]"),
    ({"type": "piecewise", "points": [[1.5, 0]]}, "INVALID_HYPERPARAMETER", "schedule.points[0]"),
    ({"type": "piecewise", "points": []}, "INVALID_HYPERPARAMETER", "schedule.points"),
    ({"type": "piecewise", "points": [[0.5]]}, "INVALID_HYPERPARAMETER", "schedule.points[0]"),
    ({"type": "constant", "p": 0, "q": 1}, "INVALID_HYPERPARAMETER", "schedule.q"),
    ({"type": "constant"}, "INVALID_HYPERPARAMETER", "schedule.p"),
    ({"type": "constant", "p": True}, "INVALID_HYPERPARAMETER", "schedule.p"),
    ({"type": "constant", "p": float("nan")}, "INVALID_HYPERPARAMETER", "schedule.p"),
    ({"type": "logistic", "pMax": 0.25, "pMin": -0.25, "tau": 0.04, "width": 0}, "INVALID_HYPERPARAMETER", "schedule.width"),
    ({"type": "reversed"}, "INVALID_HYPERPARAMETER", "schedule.of"),
])
def test_invalid_schedules_are_refused_naming_the_field(spec, code, field):
    refused(spec, code, field)


def test_validation_returns_a_copy():
    spec = {"type": "piecewise", "points": [[0, 0.1]]}
    checked = validate_schedule(spec)
    checked["points"][0][1] = 0.9
    assert spec["points"][0][1] == 0.1


def test_timeline_replacements_continue_from_global_progress_and_keep_history():
    t = ScheduleTimeline({"type": "constant", "p": 0.25})
    t.replace_from(40, {"type": "linear", "from": 1, "to": -1}, "ui", "flatter")
    assert t.p_at(39, 100) == 0.25
    assert t.p_at(40, 100) == pytest.approx(1 - 2 * 0.4, abs=1e-15)
    with pytest.raises(ValueError, match="already replaced from step 40"):
        t.replace_from(30, {"type": "constant", "p": 0})
    with pytest.raises(ValueError, match="schedule.p") as info:
        t.replace_from(50, {"type": "constant", "p": -4})
    assert info.value.code == "P_OUT_OF_RANGE"
    assert [e["fromStep"] for e in t.history()] == [0, 40]
    back = ScheduleTimeline.from_json(json.loads(json.dumps(t.to_json())))
    assert back.to_json() == t.to_json()
    assert all(back.p_at(s, 100) == t.p_at(s, 100) for s in range(0, 101, 7))


@pytest.mark.parametrize("data,why", [
    (None, "not an object"),
    ({"version": 2, "entries": []}, "version"),
    ({"version": 1, "entries": []}, "no entries"),
    ({"version": 1, "entries": [{"fromStep": 3, "spec": {"type": "constant", "p": 0}, "source": "a", "reason": ""}]}, "step 0"),
    ({"version": 1, "entries": [{"fromStep": 0, "spec": {"type": "constant", "p": 0}}]}, "source"),
    ({"version": 1, "entries": [{"fromStep": 0, "spec": {"type": "constant", "p": 9}, "source": "a", "reason": ""}]}, "outside"),
])
def test_a_corrupt_timeline_is_invalid_state(data, why):
    with pytest.raises(ValueError, match=why) as info:
        ScheduleTimeline.from_json(data)
    assert info.value.code == "INVALID_STATE"

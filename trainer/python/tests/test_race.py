"""Fork-and-race on a torch run (muonscope/race.py): the branches train on the same noise microbatches, the
suggested one with the change made, and the run is exactly as it was afterwards."""
import math

import pytest
import torch
from torch import nn

import muonscope
from muonscope import commands as cmds
from muonscope import race
from muonscope.measure import answer
from test_watch import run_ts

K, MB = 4, 8


def make_run(tmp_path, optimizer="dynmuon", dropout=0.0, nan_above_lr=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Dropout(dropout), nn.Linear(12, 3))
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(K * MB, 6, generator=gen), torch.randn(K * MB, 3, generator=gen)
    vx, vy = torch.randn(32, 6, generator=gen), torch.randn(32, 3, generator=gen)
    matrices = [p for p in model.parameters() if p.ndim == 2]
    others = [p for p in model.parameters() if p.ndim != 2]
    if optimizer == "dynmuon":
        opts = [muonscope.DynMuon(matrices, total_steps=100, lr=0.02, schedule={"type": "linear", "from": 0.5, "to": -0.5}),
                torch.optim.AdamW(others, lr=0.01)]
    else:
        opts = [torch.optim.AdamW(model.parameters(), lr=0.01)]

    def noise_probe(i):
        s = slice(i * MB, (i + 1) * MB)
        loss = ((model(x[s]) - y[s]) ** 2).mean()
        if nan_above_lr is not None and opts[0].param_groups[0]["lr"] > nan_above_lr:
            loss = loss * float("nan")
        return loss

    run = muonscope.watch(model, opts, total_steps=100, out=str(tmp_path), host=False, batch_size=MB,
                          probe=lambda: ((model(vx) - vy) ** 2).mean(), noise_probe=noise_probe, microbatch_size=MB,
                          config={"diagnostics": {"every": 1000, "microbatches": K}})
    for _ in range(3):  # a few real steps: momentum buffers and Adam moments exist
        for o in opts:
            o.zero_grad()
        loss = ((model(x[:MB]) - y[:MB]) ** 2).mean()
        loss.backward()
        run.log(loss=loss)
        for o in opts:
            o.step()
    cmds.apply(run, {"kind": "pause"}, "test", "c1")
    return run, model, opts


def state_of(model, opts):
    return ([t.detach().clone() for t in model.state_dict().values()],
            [torch.cat([v.flatten().double() for st in o.state.values() for v in st.values() if isinstance(v, torch.Tensor)]) for o in opts],
            [dict((k, v) for k, v in g.items() if k != "params") for o in opts for g in o.param_groups],
            torch.random.get_rng_state())


def assert_same(a, b):
    for xs, ys in zip(a[0], b[0]):
        assert torch.equal(xs, ys)
    for xs, ys in zip(a[1], b[1]):
        assert torch.equal(xs, ys)
    assert a[2] == b[2]
    assert torch.equal(a[3], b[3])


def test_a_race_of_the_unchanged_run_against_itself_is_a_tie_and_changes_nothing(tmp_path):
    run, model, opts = make_run(tmp_path, dropout=0.2)  # dropout: the branches must see the same random masks
    before = state_of(model, opts)
    p_before = opts[0].current_p()
    result = race.race_result(run, {"steps": 5, "change": {"kind": "set_lr", "lr": 0.02}})
    assert_same(before, state_of(model, opts))
    assert opts[0].current_p() == p_before and run.steps_done == 3
    assert result["start"] == 3 and result["steps"] == 5 and result["heldOutExamples"] is None
    # Bit for bit: same state, same data, same random numbers, same lr.
    assert result["baseline"] == result["suggested"]
    assert math.isfinite(result["baseline"]["valLoss"]) and result["baseline"]["lr"] == 0.02
    # The p of the branch's last step (index 7) under the linear schedule 0.5 → −0.5 over 100 steps.
    assert result["baseline"]["p"] == pytest.approx(0.5 - 7 / 100, abs=1e-12)


def test_the_suggested_branch_trains_with_the_change_and_the_run_keeps_its_own_settings(tmp_path):
    run, model, opts = make_run(tmp_path)
    before = state_of(model, opts)
    result = race.race_result(run, {"steps": 4, "change": {"kind": "set_schedule", "schedule": {"type": "constant", "p": -0.25}}})
    assert_same(before, state_of(model, opts))
    assert opts[0].schedule_spec() == {"type": "linear", "from": 0.5, "to": -0.5}
    assert result["suggested"]["p"] == -0.25 and result["baseline"]["p"] == pytest.approx(0.5 - 6 / 100, abs=1e-12)
    assert result["suggested"]["valLoss"] != result["baseline"]["valLoss"]
    lr = race.race_result(run, {"steps": 4, "change": {"kind": "set_lr", "lr": 0.04}})
    assert lr["suggested"]["lr"] == 0.04 and lr["baseline"]["lr"] == 0.02
    assert opts[0].param_groups[0]["lr"] == 0.02 and opts[1].param_groups[0]["lr"] == 0.01
    # The AdamW group followed the run's lr rule in the branch (scaled with the first group's) and is back.
    assert_same(before, state_of(model, opts))


def test_a_branch_that_diverges_stops_and_says_where(tmp_path):
    run, model, opts = make_run(tmp_path, nan_above_lr=0.03)
    before = state_of(model, opts)
    result = race.race_result(run, {"steps": 3, "change": {"kind": "set_lr", "lr": 0.05}})
    assert result["suggested"] == {"trainLoss": None, "valLoss": None, "divergedAtStep": 3, "p": None, "lr": 0.05}
    assert result["baseline"]["valLoss"] is not None
    assert_same(before, state_of(model, opts))


def test_what_cannot_race_is_refused_with_nothing_changed(tmp_path):
    run, model, opts = make_run(tmp_path)
    before = state_of(model, opts)
    bad = [
        ({"steps": 0, "change": {"kind": "set_lr", "lr": 0.1}}, "INVALID_COMMAND", "steps must be"),
        ({"steps": 98, "change": {"kind": "set_lr", "lr": 0.1}}, "INVALID_COMMAND", "past the end of the run"),
        ({"steps": 2, "change": {"kind": "pause"}}, "INVALID_COMMAND", "set_lr or set_schedule"),
        ({"steps": 2, "change": {"kind": "set_schedule", "schedule": {"type": "wobbly"}}}, "INVALID_COMMAND", "set_schedule"),
    ]
    for params, code, words in bad:
        reply = answer(run, {"type": "measure", "id": "m1", "what": "race", "params": params})
        assert reply["type"] == "refused" and reply["code"] == code and words in reply["message"], reply
    cmds.apply(run, {"kind": "resume"}, "test", "c2")
    reply = answer(run, {"type": "measure", "id": "m2", "what": "race", "params": {"steps": 2, "change": {"kind": "set_lr", "lr": 0.1}}})
    assert reply["code"] == "NOT_ALLOWED_NOW" and "while paused" in reply["message"]
    assert_same(before, state_of(model, opts))


def test_a_run_without_probes_or_schedule_is_refused(tmp_path):
    run, model, opts = make_run(tmp_path, optimizer="adamw")
    reply = answer(run, {"type": "measure", "id": "m1", "what": "race", "params": {"steps": 2, "change": {"kind": "set_schedule", "schedule": {"type": "constant", "p": 0}}}})
    assert reply["type"] == "refused" and reply["code"] == "NOT_ALLOWED_NOW" and "no p schedule" in reply["message"]
    run.observer.probe = None
    reply = answer(run, {"type": "measure", "id": "m2", "what": "race", "params": {"steps": 2, "change": {"kind": "set_lr", "lr": 0.1}}})
    assert reply["code"] == "NOT_ALLOWED_NOW" and "probe" in reply["message"]


def race_result_issues(results):
    """Python's race answers through the host's own validator (trainer/host/channel-messages.ts validateRaceResult)."""
    return run_ts("trainer/host/channel-messages.ts", ["validateRaceResult"],
                  "console.log(JSON.stringify(input.map((r: unknown) => { const v = validateRaceResult(r); return v.ok ? null : v.issues; })));\n", results)


def test_every_race_answer_passes_the_hosts_validator(tmp_path):
    run, model, opts = make_run(tmp_path, nan_above_lr=0.03)
    answers = [race.race_result(run, {"steps": 2, "change": {"kind": "set_lr", "lr": 0.05}}),  # one branch diverged
               race.race_result(run, {"steps": 2, "change": {"kind": "set_schedule", "schedule": {"type": "constant", "p": 0}}})]
    assert race_result_issues(answers) == [None, None]
    broken = dict(answers[1], steps=0)
    assert race_result_issues([broken])[0][0]["path"] == "/result/steps"

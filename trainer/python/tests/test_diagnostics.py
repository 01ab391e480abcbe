"""The diagnostics' math against numpy references (test/fixtures/generate_torch_diagnostics.py) and the
curvature against torch's exact Hessian of a tiny model."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from muonscope import diagnostics as dg
from muonscope.scheduler import Scheduler

FIXTURES = Path(__file__).resolve().parents[3] / "test" / "fixtures" / "torch-diagnostics"
INDEX = json.loads((FIXTURES / "index.json").read_text())


def load(ref):
    return torch.from_numpy(np.fromfile(FIXTURES / ref["file"], dtype="<f8" if ref["dtype"] == "float64" else "<f4").reshape(ref["shape"]).copy())


CASES = INDEX["matrices"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_singular_values_and_summaries_match_numpy(case):
    g, o = load(case["G"]), load(case["O"])
    s, exact = dg.singular_values(g)
    assert exact
    np.testing.assert_allclose(s.numpy(), case["sG"], rtol=1e-12, atol=1e-14)
    summary = dg.spectrum_summary(s.tolist())
    for key, want in case["summaryG"].items():
        assert summary[key] == pytest.approx(want, rel=1e-12), key
    so = dg.singular_values(o)[0].tolist()
    np.testing.assert_allclose(so, case["sO"], rtol=1e-12)
    k = min(case["rows"], case["cols"])
    assert dg.alignment(g, o) == pytest.approx(case["alignment"], rel=1e-12)
    assert dg.nuclear_alignment(g, o, dg.nuclear_norm(s.tolist())) == pytest.approx(case["nuclearAlignment"], rel=1e-12)
    assert dg.orthogonality_error_from_spectrum(so, k) == pytest.approx(case["orthogonalityError"], rel=1e-10)
    assert dg.orthogonality_error(o) == pytest.approx(case["orthogonalityError"], rel=1e-10)


def test_top_k_path_by_svd_lowrank_finds_the_leading_values():
    case = next(c for c in CASES if c["name"] == "tall40x12")  # σ_i ∝ i^-2: a clear gap
    s, exact = dg.singular_values(load(case["G"]), exact_max_side=4, top_k=3)
    assert not exact and s.shape == (3,)
    # float32 randomized SVD with 4 power iterations on a spectrum decaying as i^-2.
    np.testing.assert_allclose(s.numpy(), case["sG"][:3], rtol=1e-5)


def test_top_k_summary_keeps_the_stable_rank_exact():
    case = next(c for c in CASES if c["name"] == "tall40x12")
    g = load(case["G"])
    fro = float(torch.linalg.vector_norm(g))
    top = case["sG"][:3]
    s = dg.spectrum_summary(top, fro, 12)
    assert s["stableRank"] == pytest.approx(case["summaryG"]["stableRank"], rel=1e-12)
    assert s["effectiveRank"] >= case["summaryG"]["effectiveRank"] - 1e-12  # an upper estimate


def test_a_zero_matrix_summarises_to_zeros_not_nan():
    s, _ = dg.singular_values(torch.zeros(3, 5))
    assert dg.spectrum_summary(s.tolist()) == {"sigmaMax": 0.0, "stableRank": 0.0, "effectiveRank": 0.0, "nuclearRank": 0.0}
    assert dg.alignment(torch.zeros(3, 5), torch.ones(3, 5)) == 0.0


def test_singular_values_refuse_a_vector():
    with pytest.raises(ValueError, match="need a matrix"):
        dg.singular_values(torch.ones(4))


def test_microbatch_noise_matches_the_two_batch_definition():
    ref = INDEX["noise"]
    micro = load(ref["micro"])
    split = ref["split"]
    grads = [{"a": row[:split].reshape(3, 4), "b": row[split:]} for row in micro]
    per, overall = dg.microbatch_noise(grads, ref["microbatchSize"])
    assert overall["gradSq"] == pytest.approx(ref["gradSq"], rel=1e-12)
    assert overall["traceSigma"] == pytest.approx(ref["traceSigma"], rel=1e-12)
    # Per parameter the estimates add up to the whole (both are sums over coordinates).
    assert per["a"]["gradSq"] + per["b"]["gradSq"] == pytest.approx(ref["gradSq"], rel=1e-12)
    assert dg.b_simple(overall) == pytest.approx(max(0.0, ref["traceSigma"]) / ref["gradSq"], rel=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        dg.microbatch_noise(grads[:1], 4)


def test_noise_from_sums_is_microbatch_noise_and_sums_of_groups_add_up():
    ref = INDEX["noise"]
    micro = load(ref["micro"])
    split = ref["split"]
    grads = [{"a": row[:split].reshape(3, 4), "b": row[split:]} for row in micro]
    k, b = len(grads), ref["microbatchSize"]
    assert k >= 3
    expected = dg.microbatch_noise(grads, b)

    def close(got):
        per, overall = got
        assert list(per) == ["a", "b"]
        for key in ("gradSq", "traceSigma"):
            assert overall[key] == pytest.approx(expected[1][key], rel=1e-12)
            assert overall[key] == pytest.approx(ref[key], rel=1e-12)
            for name in per:
                assert per[name][key] == pytest.approx(expected[0][name][key], rel=1e-12)

    close(dg.noise_from_sums(*dg.microbatch_sums(grads), k, b))
    # Two groups measured apart (two ranks: i even, i odd), their sums added: the same estimate.
    (s0, q0), (s1, q1) = dg.microbatch_sums(grads[0::2]), dg.microbatch_sums(grads[1::2])
    close(dg.noise_from_sums({n: s0[n] + s1[n] for n in s0}, {n: q0[n] + q1[n] for n in q0}, k, b))
    # A lazy iterable, one microbatch at a time; none gives nothing to add.
    close(dg.noise_from_sums(*dg.microbatch_sums(iter(grads)), k, b))
    assert dg.microbatch_sums([]) == ({}, {})
    # The sums are what the names say: the sum of the gradients and of their squared norms.
    s, q = dg.microbatch_sums(grads)
    assert torch.equal(s["a"].reshape(3, 4), sum(g["a"] for g in grads))
    assert float(q["b"]) == pytest.approx(sum(float(torch.sum(g["b"] ** 2)) for g in grads), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        dg.noise_from_sums(*dg.microbatch_sums(grads[:1]), 1, b)


def test_noise_window_averages_then_divides_and_forgets_old_steps():
    w = dg.NoiseWindow(10)
    w.add(0, {"gradSq": 1.0, "traceSigma": 4.0})
    w.add(5, {"gradSq": 3.0, "traceSigma": 4.0})
    assert w.average() == {"gradSq": 2.0, "traceSigma": 4.0, "bSimple": 2.0, "count": 2}
    w.add(10, {"gradSq": 2.0, "traceSigma": 2.0})  # step 0 is 10 steps old: out
    assert w.average()["count"] == 2 and w.average()["gradSq"] == 2.5


def tiny_model():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    x = torch.randn(7, 3, dtype=torch.float64)
    y = torch.randn(7, 2, dtype=torch.float64)
    return model, x, y


def test_hvp_curvature_equals_the_exact_hessian():
    model, x, y = tiny_model()
    names = [n for n, _ in model.named_parameters()]
    params = list(model.parameters())
    shapes = [p.shape for p in params]
    flat0 = torch.cat([p.detach().reshape(-1) for p in params])

    def loss_of(flat):
        tensors, i = {}, 0
        for n, s in zip(names, shapes):
            tensors[n] = flat[i:i + math.prod(s)].reshape(s)
            i += math.prod(s)
        return torch.nn.functional.mse_loss(torch.func.functional_call(model, tensors, (x,)), y)

    hessian = torch.autograd.functional.hessian(loss_of, flat0)
    grad = torch.autograd.functional.jacobian(loss_of, flat0)
    torch.manual_seed(5)
    d = [torch.randn(s, dtype=torch.float64) for s in shapes]
    dflat = torch.cat([t.reshape(-1) for t in d])
    gd, dhd, dd = dg.directional_curvature(lambda: torch.nn.functional.mse_loss(model(x), y), params, d)
    assert dhd == pytest.approx(float(dflat @ hessian @ dflat), rel=1e-10)
    assert gd == pytest.approx(float(grad @ dflat), rel=1e-10)
    assert dd == pytest.approx(float(dflat @ dflat), rel=1e-12)
    # The parameters' own gradients are untouched.
    assert all(p.grad is None for p in params)
    # Several directions on one graph (the whole model's and one layer's, as the observer asks): each
    # against the exact Hessian too, so sharing the first backward changes nothing.
    d_layer = [t if i == 0 else torch.zeros_like(t) for i, t in enumerate(d)]
    lflat = torch.cat([t.reshape(-1) for t in d_layer])
    both = dg.directional_curvatures(lambda: torch.nn.functional.mse_loss(model(x), y), params, [d, d_layer])
    assert both[0] == pytest.approx((gd, dhd, dd), rel=1e-12)
    assert both[1][1] == pytest.approx(float(lflat @ hessian @ lflat), rel=1e-10)
    assert both[1][0] == pytest.approx(float(grad @ lflat), rel=1e-10)
    assert all(p.grad is None for p in params)


def test_step_stability_from_the_definitions():
    s = dg.step_stability(gd=2.0, dhd=4.0, dd=8.0, eta=0.5)
    assert s == {"kappaUpdate": 0.5, "etaStarBefore": 0.5, "edgeAlongUpdate": 1.0}
    assert dg.step_stability(1.0, -1.0, 1.0, 0.1)["etaStarBefore"] is None


def test_scheduler_skips_a_due_expensive_diagnostic_the_budget_cannot_take():
    s = Scheduler(every=1, adaptive=True, budget_pct=10, expensive=["noise", "curvature"], max_spacing=4)
    assert s.due(0) == ["spectra", "noise"]  # first probe of noise's cost
    s.record_run("noise", 0, 50.0)
    s.record_step(500.0)
    assert s.due(1) == ["spectra", "curvature"]  # then curvature's
    s.record_run("curvature", 1, 1.0)
    s.record_step(500.0)
    # Budget: 10% of 1000 ms = 100, spent 51, so 49 left: noise (50) waits, curvature (1) runs.
    assert s.due(2) == ["spectra", "curvature"]
    s.record_run("curvature", 2, 1.0)
    s.record_step(1.0)
    assert s.due(3) == ["spectra", "curvature"]
    s.record_run("curvature", 3, 1.0)
    # Step 4 is max_spacing·every steps after noise's last run: it runs even over the budget, and what it
    # takes leaves none for curvature.
    assert s.due(4) == ["spectra", "noise"]
    assert s.due(5) != [] and Scheduler(every=3).due(4) == []
    nonadaptive = Scheduler(every=2, adaptive=False, expensive=["curvature"])
    assert nonadaptive.due(2) == ["spectra", "curvature"] and nonadaptive.due(3) == []
    with pytest.raises(ValueError, match="budgetPct"):
        Scheduler(every=1, budget_pct=0)


def test_scheduler_spends_the_budget_on_watchs_hooks_as_on_the_diagnostics():
    s = Scheduler(every=1, adaptive=True, budget_pct=10, expensive=["noise"], max_spacing=100)
    assert s.due(0) == ["spectra", "noise"]  # the first probe of its cost
    s.record_run("noise", 0, 20.0)
    s.record_step(1000.0)
    assert s.due(1) == ["spectra", "noise"]  # 100 budget, 20 spent
    s.record_run("noise", 1, 20.0)
    s.record_hooks(50.0)
    # 100 − 40 − 50 = 10 left: noise (20) waits, though the diagnostics alone spent 40% of the budget.
    assert s.due(2) == ["spectra"]
    assert s.overhead_pct() == pytest.approx(9.0, rel=1e-12)  # (40 + 50) / 1000
    s.record_step(1000.0)
    assert s.due(3) == ["spectra", "noise"]


def test_newton_schulz_reach_from_the_spectrum_equals_the_iteration_on_the_matrix():
    ref = INDEX["newtonSchulz"]
    m = load(ref["M"])
    s, _ = dg.singular_values(m)
    err, near = dg.newton_schulz_reach(s.tolist(), 6, 10, ref["coefficients"], ref["steps"], ref["eps"])
    assert err == pytest.approx(ref["polarError"], rel=1e-9)
    assert near == ref["nearOne"] and 0 < near < 6  # a case where some directions converge and some do not
    assert dg.newton_schulz_reach([0.0, 0.0], 2, 3, ref["coefficients"], 5, 1e-7) == (0.0, 0)

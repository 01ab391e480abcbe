"""muonscope.DynMuon against independent references:

- the float64 numpy references of test/fixtures/generate_optim.py (exact, released, lrOnly: parameters after
  steps 1 and 5; the exact shaped direction alone);
- torch.optim.Muon itself, run live here with its Newton–Schulz in float32 (the generator's "fp32" patch:
  torch's own source with grad.float() for grad.bfloat16()), which lrOnly at p = 0 must reproduce;
- exact SVD shaping, which the matmul-only path must match to its fitted bound;
- and the refusals (a ValueError naming the field, nothing changed) and the checkpoint round trip.

Run: .venv/bin/python -m pytest trainer/python/tests/test_optim.py  (-s prints the worst errors measured)
"""
from __future__ import annotations

import copy
import inspect
import io
import math

import pytest
import torch
import torch.optim._muon as torch_muon

from fixtures import load_array, load_index
from muonscope import DynMuon, MuonscopeValueError, linalg
from muonscope.shaping import cached_shaping_fit, gain_bounded_damping, max_shaping_gain

SET = "optim"
INDEX = load_index(SET)
DYN = INDEX["dynmuon"]
W0 = load_array(SET, DYN["w0"])
GRADS = [load_array(SET, g) for g in DYN["grads"]]

# Worst errors seen, printed at the end of the module (pytest -s) so reported numbers come from a run.
WORST: dict = {}


def note(key: str, value: float) -> None:
    WORST[key] = max(WORST.get(key, 0.0), value)


@pytest.fixture(scope="module", autouse=True)
def report_worst():
    yield
    for k, v in sorted(WORST.items()):
        print(f"\n# worst {k}: {v:.2e}", end="")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def dyn_run(steps_kept, **options):
    """Runs DynMuon on the fixture's 64×32 matrix and gradients; returns the parameters after each step."""
    p = torch.nn.Parameter(W0.clone())
    opt = DynMuon([p], lr=DYN["lr"], weight_decay=DYN["weight_decay"], momentum=DYN["momentum"], total_steps=100, **options)
    out = {}
    for k, g in enumerate(GRADS, start=1):
        p.grad = g.clone()
        opt.step()
        if k in steps_kept:
            out[k] = p.detach().clone()
    return out, opt


def check_against_fixture(mode: str, case: dict, tol: float, **options) -> None:
    out, _ = dyn_run(case["steps"], mode=mode, schedule={"type": "constant", "p": case["p"]}, **options)
    for k, ref_ref in zip(case["steps"], case["params"]):
        ref = load_array(SET, ref_ref)
        e = rel(out[k], ref)
        # The change since step 0 shows what a float32 step against a float64 reference hides in W.
        ec = rel(out[k] - W0.double(), ref.double() - W0.double())
        note(f"{mode} vs numpy, parameters", e)
        note(f"{mode} vs numpy, change since step 0", ec)
        assert e <= tol and ec <= tol, f"{mode} p {case['p']} step {k}: parameters {e:.2e}, change {ec:.2e}"


# ---- against the numpy fixtures -------------------------------------------------------------------

@pytest.mark.parametrize("case", DYN["exact"], ids=lambda c: f"p{c['p']}_eps{c['damping']}")
def test_exact_matches_the_float64_svd_reference(case):
    # The reference damps with ε alone: no gain bound (at p = −0.5, ε = 1e-3 allows 19.6×; the default is 10×).
    check_against_fixture("exact", case, 1e-5, damping=case["damping"], max_gain=None)
    check_against_fixture("exact", case, 1e-5, damping=case["damping"], max_gain=None, method="exact")


@pytest.mark.parametrize("case", DYN["released"], ids=lambda c: f"p{c['p']}")
def test_released_matches_the_published_code_reimplemented(case):
    check_against_fixture("released", case, 1e-4)


@pytest.mark.parametrize("case", DYN["lrOnly"], ids=lambda c: f"p{c['p']}")
def test_lr_only_matches_muon_times_the_norm_power(case):
    check_against_fixture("lrOnly", case, 1e-4)


def test_exact_shaped_direction_over_four_decades():
    """The direction alone (one step from zero momentum, μ = 0, lr 1, no decay, W0 = 0: W1 = −scale·D)."""
    d = INDEX["direction"]
    x = load_array(SET, d["x"])
    scale = math.sqrt(d["rows"] / d["cols"])
    for c in d["cases"]:
        p = torch.nn.Parameter(torch.zeros(d["rows"], d["cols"]))
        opt = DynMuon([p], lr=1.0, momentum=0.0, total_steps=1, damping=c["damping"], max_gain=None,
                      schedule={"type": "constant", "p": c["p"]})
        p.grad = x.clone()
        opt.step()
        e = rel(-p.detach() / scale, load_array(SET, c["direction"]))
        note("exact direction vs numpy (float32 parameter)", e)
        assert e <= 1e-6, f"p {c['p']} damping {c['damping']}: {e:.2e}"


def test_exact_at_p0_without_damping_is_the_polar_factor():
    d = INDEX["direction"]
    p = torch.nn.Parameter(torch.zeros(d["rows"], d["cols"], dtype=torch.float64))
    opt = DynMuon([p], lr=1.0, momentum=0.0, total_steps=1, damping=0.0, schedule={"type": "constant", "p": 0})
    p.grad = load_array(SET, d["x"]).double()
    opt.step()
    polar = load_array(SET, d["polar"])
    direction = -p.detach() / math.sqrt(d["rows"] / d["cols"])
    # Frobenius sizing: the polar factor of a 64×32 matrix has norm sqrt(32) already.
    e = rel(direction, polar)
    note("p = 0, eps = 0 vs the polar factor (float64 parameter)", e)
    assert e <= 1e-10, e


# ---- against torch.optim.Muon, live ---------------------------------------------------------------

def float32_newton_schulz():
    """torch's own _zeropower_via_newtonschulz with its bfloat16 cast replaced by float32, nothing else."""
    src = inspect.getsource(torch_muon._zeropower_via_newtonschulz)
    assert src.count("grad.bfloat16()") == 1, "torch's Newton-Schulz source changed; update the patch"
    namespace = dict(vars(torch_muon))
    exec(src.replace("grad.bfloat16()", "grad.float()"), namespace)  # noqa: S102 - torch's own source
    return namespace["_zeropower_via_newtonschulz"]


@pytest.mark.parametrize("shape", ["square", "tall", "wide"])
@pytest.mark.parametrize("adjust", ["original", "match_rms_adamw"])
def test_lr_only_at_p0_is_torch_muon_with_float32_newton_schulz(monkeypatch, shape, adjust):
    monkeypatch.setattr(torch_muon, "_zeropower_via_newtonschulz", float32_newton_schulz())
    fx = INDEX["shapes"][shape]
    w0 = load_array(SET, fx["w0"])
    grads = [load_array(SET, g) for g in fx["grads"]]
    a, b = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    muon = torch.optim.Muon([a], lr=0.02, weight_decay=0.1, adjust_lr_fn=None if adjust == "original" else adjust)
    dyn = DynMuon([b], mode="lrOnly", lr=0.02, weight_decay=0.1, adjust_lr=adjust, total_steps=5,
                  schedule={"type": "constant", "p": 0})
    for g in grads:
        a.grad, b.grad = g.clone(), g.clone()
        muon.step()
        dyn.step()
        e = rel(b.detach(), a.detach())
        ec = rel(b.detach() - w0, a.detach() - w0)
        note("lrOnly p = 0 vs torch.optim.Muon fp32, parameters", e)
        note("lrOnly p = 0 vs torch.optim.Muon fp32, change since step 0", ec)
        assert e <= 1e-4 and ec <= 1e-4, f"{shape} {adjust}: {e:.2e}, change {ec:.2e}"
    assert torch.equal(dyn.state[b]["momentum_buffer"], muon.state[a]["momentum_buffer"])


# ---- the matmul-only path against exact shaping ---------------------------------------------------

def spectrum_matrix(rows: int, cols: int, seed: int, low: float = 1e-3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    k = min(rows, cols)
    u, _ = torch.linalg.qr(torch.randn(rows, k, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, k, generator=g, dtype=torch.float64))
    s = torch.logspace(0, math.log10(low), k, dtype=torch.float64)
    return ((u * s) @ v.T).float()


def one_step_direction(x: torch.Tensor, p: float, **options) -> torch.Tensor:
    """D of one step from zero momentum and zero weights (μ = 0, lr 1, no decay: W1 = −scale·D)."""
    w = torch.nn.Parameter(torch.zeros_like(x))
    opt = DynMuon([w], lr=1.0, momentum=0.0, total_steps=1, schedule={"type": "constant", "p": p}, **options)
    w.grad = x.clone()
    opt.step()
    return -w.detach().double() / math.sqrt(max(1.0, x.shape[0] / x.shape[1])), opt, w


@pytest.mark.parametrize("p", [0.5, 0.0, -0.25, -0.5])
@pytest.mark.parametrize("normalization", ["frobenius", "spectral", "none"])
# (96, 240) and (240, 96) are long enough for the Gram-side evaluation (linalg.GRAM_SIDE_MIN_ASPECT).
@pytest.mark.parametrize("rows,cols", [(128, 96), (96, 160), (96, 240), (240, 96)])
def test_matmul_shaping_matches_exact_to_its_fitted_bound(p, normalization, rows, cols):
    """The fitted bound (max relative error per singular value on [1e-3, 1]·σ_max) bounds the relative
    Frobenius error of the whole direction when every σ lies in that range; `auto` picks matmul here."""
    x = spectrum_matrix(rows, cols, seed=rows + cols) * 0.37
    exact, _, _ = one_step_direction(x, p, method="exact", normalization=normalization)
    approx, opt, w = one_step_direction(x, p, normalization=normalization)
    info = opt.step_info(w)
    assert info["method"] == "matmul"
    bound = cached_shaping_fit(p, gain_bounded_damping(p, 1e-3, 10.0)).max_rel_error
    assert info["shapingRelError"] == bound
    e = rel(approx, exact)
    note(f"matmul vs exact shaping / fitted bound ({normalization})", e / bound)
    assert e <= bound, f"p {p} {normalization}: {e:.3e} > bound {bound:.3e}"
    if p == 0.0 and normalization == "frobenius":
        # Not vacuous: at p = 0 Muon's Newton–Schulz (S' ≈ 0.7…1.2) is further from the polar factor.
        muon_like, _, _ = one_step_direction(x, 0.0, mode="lrOnly")
        assert rel(muon_like / muon_like.norm(), exact / exact.norm()) > 5 * e


@pytest.mark.parametrize("rows,cols", [(40, 120), (120, 40), (40, 60)])
def test_ns_combination_is_the_sum_of_the_iterates_on_either_side(rows, cols):
    """Finishing on the Gram side (long matrices) is the same Σ_k w_k·X_k as iterating X itself: in float64
    to 1e-11; in float32 against that, measured 2.8e-5 on the Gram side (2.3e-3 if it took over from step 0,
    why it does not) and 5.4e-6 on the X side; the bounds leave ×3."""
    fit = cached_shaping_fit(-0.25, 1e-3)
    steps = [fit.step] * fit.steps
    x = spectrum_matrix(rows, cols, seed=11).double()
    xs = x if rows <= cols else x.T
    s = linalg.power_sigma_max(x, 200) * 1.02
    xk = xs / s
    want = xk * fit.weights[0]
    for k, step in enumerate(steps):
        xk = linalg.ns_step(xk, step)
        want = want + fit.weights[k + 1] * xk
    want = want if rows <= cols else want.T
    got, s_found = linalg.ns_combination(x, steps, fit.weights, 1.02, 200)
    assert abs(float(s_found / s) - 1) < 1e-12
    assert rel(got, want) < 1e-11, rel(got, want)
    gram_side = max(rows, cols) >= linalg.GRAM_SIDE_MIN_ASPECT * min(rows, cols)
    assert gram_side == ((rows, cols) != (40, 60))
    got32, _ = linalg.ns_combination(x.float(), steps, fit.weights, 1.02, 200)
    e32 = rel(got32, want)
    note(f"ns_combination float32 vs float64 ({'Gram side' if gram_side else 'X side'})", e32)
    assert e32 < (1e-4 if gram_side else 1.6e-5), e32


# ---- the gain bound -------------------------------------------------------------------------------

@pytest.mark.parametrize("p,expected", [(-0.5, 3.85e-3), (-1.0, 0.0501)])
def test_gain_bound_raises_the_damping_to_hold_max_gain(p, expected):
    eps = gain_bounded_damping(p, 1e-3, 10.0)
    assert abs(eps - expected) / expected < 2e-3  # the figures of docs/algorithms.md §2.3
    # Brute force: the largest φ_p(σ)/φ_p(1) over a fine σ grid in (0, 1] is the bound.
    s = torch.logspace(-8, 0, 200001, dtype=torch.float64)
    d = eps * eps
    phi = s * (s * s + d) ** ((p - 1) / 2)
    gain = float(phi.max() / (1 + d) ** ((p - 1) / 2))
    assert abs(gain - 10.0) < 1e-6, gain
    assert max_shaping_gain(-0.25, 1e-3) < 10  # Track 3's p_min keeps ε = 1e-3
    assert gain_bounded_damping(-0.25, 1e-3, 10.0) == 1e-3
    assert gain_bounded_damping(0.5, 1e-3, 10.0) == 1e-3


# ---- label, defaults, matrices --------------------------------------------------------------------

def test_label_and_defaults_follow_the_ts_trainer():
    w = torch.nn.Parameter(torch.zeros(4, 3))
    assert DynMuon([w], total_steps=10).label == "dynmuon (exact, frobenius)"
    assert DynMuon([w], total_steps=10, normalization="spectral").label == "dynmuon (exact, spectral)"
    assert DynMuon([w], total_steps=10, mode="released").label == "dynmuon (released)"
    assert DynMuon([w], total_steps=10, mode="lrOnly").label == "dynmuon (lrOnly)"
    g = DynMuon([w], total_steps=10).param_groups[0]
    assert (g["lr"], g["weight_decay"], g["momentum"], g["nesterov"], g["damping"], g["max_gain"], g["method"], g["adjust_lr"]) == (
        0.02, 0.0, 0.95, True, 1e-3, 10.0, "auto", "original")
    r = DynMuon([w], total_steps=10, mode="released").param_groups[0]
    assert (r["nesterov"], r["adjust_lr"]) == (False, "spectral_norm")
    opt = DynMuon([w], total_steps=100)
    assert opt.schedule_spec() == {"type": "logistic", "pMax": 0.25, "pMin": -0.25, "tau": 0.04, "width": 0.04}
    assert abs(opt.current_p() - (-0.25 + 0.5 / (1 + math.exp(-1)))) < 1e-15


@pytest.mark.parametrize("rows,cols,method", [(64, 200, "exact"), (200, 64, "exact"), (65, 65, "matmul")])
def test_auto_shapes_exactly_up_to_a_short_side_of_64(rows, cols, method):
    _, opt, w = one_step_direction(spectrum_matrix(rows, cols, seed=3), -0.25)
    assert opt.step_info(w)["method"] == method


def test_conv_kernels_are_shaped_as_their_flattened_matrix():
    g = torch.Generator().manual_seed(5)
    w0 = torch.randn(8, 4, 3, 3, generator=g)
    grads = [torch.randn(8, 4, 3, 3, generator=g) for _ in range(3)]
    for mode in ("exact", "released", "lrOnly"):
        a, b = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.reshape(8, 36).clone())
        oa = DynMuon([a], total_steps=3, mode=mode, schedule={"type": "constant", "p": -0.25})
        ob = DynMuon([b], total_steps=3, mode=mode, schedule={"type": "constant", "p": -0.25})
        for gr in grads:
            a.grad, b.grad = gr.clone(), gr.reshape(8, 36).clone()
            oa.step()
            ob.step()
        assert torch.equal(a.detach().reshape(8, 36), b.detach()), mode


def test_bfloat16_parameters_keep_float32_momentum():
    w = torch.nn.Parameter(W0.clone().bfloat16())
    opt = DynMuon([w], total_steps=5, schedule={"type": "constant", "p": -0.25})
    ref_opt = DynMuon([torch.nn.Parameter(W0.clone())], total_steps=5, schedule={"type": "constant", "p": -0.25})
    w.grad = GRADS[0].bfloat16()
    opt.step()
    assert opt.state[w]["momentum_buffer"].dtype == torch.float32
    # One step in bf16 storage: the weights agree with float32 DynMuon to bf16 precision.
    ref_w = ref_opt.param_groups[0]["params"][0]
    ref_w.grad = GRADS[0].bfloat16().float()
    ref_opt.step()
    assert rel(w.detach().float(), ref_w.detach()) < 1e-2


# ---- bad input: a ValueError naming the field, nothing changed ------------------------------------

BAD_OPTIONS = [
    ({"mode": "fancy"}, "mode", "UNKNOWN_MODE"),
    ({"lr": -1.0}, "lr", "INVALID_HYPERPARAMETER"),
    ({"lr": float("nan")}, "lr", "INVALID_HYPERPARAMETER"),
    ({"lr": "0.1"}, "lr", "INVALID_HYPERPARAMETER"),
    ({"lr": True}, "lr", "INVALID_HYPERPARAMETER"),
    ({"total_steps": 0}, "total_steps", "INVALID_HYPERPARAMETER"),
    ({"total_steps": 2.5}, "total_steps", "INVALID_HYPERPARAMETER"),
    ({"momentum": 1.0}, "momentum", "INVALID_HYPERPARAMETER"),
    ({"weight_decay": -0.1}, "weight_decay", "INVALID_HYPERPARAMETER"),
    ({"damping": -1e-3}, "damping", "INVALID_HYPERPARAMETER"),
    ({"max_gain": 0.5}, "max_gain", "INVALID_HYPERPARAMETER"),
    ({"normalization": "l2"}, "normalization", "INVALID_HYPERPARAMETER"),
    ({"method": "svd"}, "method", "UNKNOWN_MODE"),
    ({"coefficients": "dion"}, "coefficients", "UNKNOWN_COEFFICIENTS"),
    ({"ns_steps": 0}, "ns_steps", "INVALID_HYPERPARAMETER"),
    ({"adjust_lr": "sqrt"}, "adjust_lr", "INVALID_HYPERPARAMETER"),
    ({"nesterov": 1}, "nesterov", "INVALID_HYPERPARAMETER"),
    ({"betas": (0.9, 0.95)}, "betas", "INVALID_HYPERPARAMETER"),
    ({"schedule": {"type": "exponential"}}, "schedule", "UNKNOWN_SCHEDULE"),
    ({"schedule": {"type": "constant", "p": 1.5}}, "schedule", "P_OUT_OF_RANGE"),
    ({"schedule": {"type": "linear", "from": 0}}, "schedule.to", "INVALID_HYPERPARAMETER"),
    ({"schedule": {"type": "piecewise", "points": [[0.5, 0], [0.2, 0.1]]}}, "schedule.points[1]", "INVALID_HYPERPARAMETER"),
    ({"schedule": {"type": "reversed", "of": {"type": "logistic", "pMax": 2, "pMin": 0, "tau": 0.5, "width": 0.01}}},
     "schedule.of", "P_OUT_OF_RANGE"),
]


@pytest.mark.parametrize("options,field,code", BAD_OPTIONS, ids=[f"{o[1]}-{i}" for i, o in enumerate(BAD_OPTIONS)])
def test_bad_options_are_refused_naming_the_field(options, field, code):
    kw = {"total_steps": 10, **options}
    with pytest.raises(ValueError, match=r"\b" + field.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")) as info:
        DynMuon([torch.nn.Parameter(torch.zeros(4, 3))], **kw)
    assert isinstance(info.value, MuonscopeValueError) and info.value.code == code


def test_non_matrices_are_refused_with_the_advice_to_use_adamw():
    with pytest.raises(ValueError, match="AdamW"):
        DynMuon([torch.nn.Parameter(torch.zeros(4))], total_steps=10)
    opt = DynMuon([torch.nn.Parameter(torch.zeros(4, 3))], total_steps=10)
    with pytest.raises(ValueError, match="AdamW"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3))]})
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3, 3))], "lr": -1})
    assert len(opt.param_groups) == 1


def snapshot(opt, params):
    return copy.deepcopy(opt.state_dict()), [p.detach().clone() for p in params]


def assert_same(a, b):
    (sa, pa), (sb, pb) = a, b
    assert all(torch.equal(x, y) for x, y in zip(pa, pb))
    assert sa["dynmuon"] == sb["dynmuon"] and sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        assert torch.equal(sa["state"][k]["momentum_buffer"], sb["state"][k]["momentum_buffer"])


def test_refused_commands_and_steps_change_nothing():
    def make():
        w = torch.nn.Parameter(W0.clone())
        return w, DynMuon([w], total_steps=10, schedule={"type": "linear", "from": 0.5, "to": -0.5})

    w, opt = make()
    ref_w, ref = make()
    for k in range(2):
        for p, o in ((w, opt), (ref_w, ref)):
            p.grad = GRADS[k].clone()
            o.step()
    before = snapshot(opt, [w])
    with pytest.raises(ValueError, match="lr"):
        opt.set_lr(-0.5)
    with pytest.raises(ValueError, match="lr"):
        opt.set_lr(float("inf"))
    with pytest.raises(ValueError, match="schedule.p"):
        opt.set_schedule({"type": "constant", "p": 3})
    with pytest.raises(ValueError, match="schedule"):
        opt.set_schedule({"type": "cosine", "from": 0})
    with pytest.raises(ValueError, match="from_step"):
        opt.set_schedule({"type": "constant", "p": 0}, from_step=1)  # a step already taken
    bad_grad = GRADS[2].clone()
    bad_grad[3, 4] = float("nan")
    w.grad = bad_grad
    with pytest.raises(ValueError, match="non-finite") as info:
        opt.step()
    assert info.value.code == "NON_FINITE"
    assert opt.step_count == 2
    assert_same(snapshot(opt, [w]), before)
    # And the run goes on exactly as one that never saw the refusals.
    for k in range(2, 5):
        for p, o in ((w, opt), (ref_w, ref)):
            p.grad = GRADS[k].clone()
            o.step()
    assert_same(snapshot(opt, [w]), snapshot(ref, [ref_w]))


def test_set_lr_and_set_schedule_take_effect_from_the_next_step():
    w = torch.nn.Parameter(W0.clone())
    opt = DynMuon([w], total_steps=10, schedule={"type": "constant", "p": 0.5})
    w.grad = GRADS[0].clone()
    opt.step()
    assert opt.step_info(w)["p"] == 0.5
    opt.set_lr(0.005)
    opt.set_schedule({"type": "linear", "from": 1, "to": -1}, source="advisor", reason="test")
    assert opt.param_groups[0]["lr"] == 0.005
    assert opt.current_p() == pytest.approx(1 - 2 * 0.1, abs=1e-15)  # global progress q = 1/10, not a restart
    w.grad = GRADS[1].clone()
    opt.step()
    assert opt.step_info(w)["p"] == pytest.approx(0.8, abs=1e-15)
    assert [(e["fromStep"], e["source"]) for e in opt.schedule_history()] == [(0, "config"), (1, "advisor")]
    assert opt.p_at(0) == 0.5


# ---- checkpoints ----------------------------------------------------------------------------------

def round_trip_case(options):
    gen = torch.Generator().manual_seed(11)
    inits = [torch.randn(96, 80, generator=gen) * 0.05, torch.randn(8, 4, 3, 3, generator=gen) * 0.1]
    grads = [[torch.randn(*t.shape, generator=gen) for t in inits] for _ in range(10)]

    def make(params, **override):
        kw = dict(total_steps=10, schedule={"type": "logistic", "pMax": 0.5, "pMin": -0.5, "tau": 0.3, "width": 0.1},
                  weight_decay=0.01, **options)
        kw.update(override)
        return DynMuon([{"params": [params[0]]}, {"params": [params[1]], "lr": 0.01}], **kw)

    def steps(opt, params, ks):
        for k in ks:
            if k == 3:
                opt.set_schedule({"type": "cosine", "from": 0.3, "to": -0.4}, source="ui", reason="k = 3")
                opt.set_schedule({"type": "constant", "p": -0.1}, from_step=7, source="advisor", reason="later")
            for p, g in zip(params, grads[k]):
                p.grad = g.clone()
            opt.step()

    straight = [torch.nn.Parameter(t.clone()) for t in inits]
    s_opt = make(straight)
    steps(s_opt, straight, range(10))

    first = [torch.nn.Parameter(t.clone()) for t in inits]
    f_opt = make(first)
    steps(f_opt, first, range(5))
    buf = io.BytesIO()
    torch.save({"params": [p.detach() for p in first], "optimizer": f_opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    resumed = [torch.nn.Parameter(t.clone()) for t in saved["params"]]
    # Built with other settings on purpose: the checkpoint's must win.
    r_opt = make(resumed, total_steps=999, schedule={"type": "constant", "p": 0.9})
    r_opt.load_state_dict(saved["optimizer"])
    assert r_opt.step_count == 5 and r_opt.total_steps == 10
    steps(r_opt, resumed, range(5, 10))
    assert_same(snapshot(r_opt, resumed), snapshot(s_opt, straight))
    assert r_opt.schedule_history() == s_opt.schedule_history()


@pytest.mark.parametrize("options", [{}, {"method": "exact"}, {"mode": "released"}, {"mode": "lrOnly"},
                                     {"normalization": "spectral", "method": "matmul"}], ids=str)
def test_state_dict_round_trip_continues_identically(options):
    round_trip_case(options)


def test_a_corrupt_checkpoint_is_refused_and_changes_nothing():
    w = torch.nn.Parameter(W0.clone())
    opt = DynMuon([w], total_steps=10)
    w.grad = GRADS[0].clone()
    opt.step()
    sd = copy.deepcopy(opt.state_dict())
    before = snapshot(opt, [w])
    bad_schedule = copy.deepcopy(sd)
    bad_schedule["dynmuon"]["schedule"]["entries"][0]["spec"] = {"type": "constant", "p": 7}
    bad_group = copy.deepcopy(sd)
    bad_group["param_groups"][0]["lr"] = -1
    bad_buffer = copy.deepcopy(sd)
    bad_buffer["state"][0]["momentum_buffer"] = torch.zeros(3, 3)
    for bad, mentions in ((bad_schedule, "schedule"), (bad_group, "lr"), (bad_buffer, "momentum"),
                          ({"state": {}, "param_groups": sd["param_groups"]}, "dynmuon")):
        with pytest.raises(ValueError, match=mentions) as info:
            opt.load_state_dict(bad)
        assert info.value.code == "INVALID_STATE"
    assert_same(snapshot(opt, [w]), before)

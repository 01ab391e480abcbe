"""The host's `measure` (modeDirections, measure.py) against an exact numpy reference on least-squares
layers, whose Hessian block is known in closed form: for L = (1/2N)·Σ‖W1·x1 + W2·x2 − y‖², the curvature of
W1 along u·vᵀ is vᵀ·S1·v with S1 = mean x1·x1ᵀ. And the rank rule against the TS probe's own output."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import muonscope
from muonscope import measure
from muonscope.optim import DynMuon

RANKS = json.loads((Path(__file__).resolve().parents[3] / "test" / "fixtures" / "log-spaced-ranks.json").read_text())["cases"]


@pytest.mark.parametrize("case", RANKS, ids=[f"{c['rankCount']}-{c['k']}" for c in RANKS])
def test_log_spaced_ranks_equal_the_ts_probes(case):
    assert measure.log_spaced_ranks(case["rankCount"], case["k"]) == case["ranks"]


def test_log_spaced_ranks_refuse_bad_sizes():
    with pytest.raises(ValueError, match="rank_count"):
        measure.log_spaced_ranks(0, 3)
    with pytest.raises(ValueError, match="k must"):
        measure.log_spaced_ranks(8, 0)


class TwoHeads(nn.Module):
    """y ≈ W1·x1 + W2·x2: two least-squares layers sharing one residual."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 5, bias=False)
        self.fc2 = nn.Linear(4, 5, bias=False)

    def forward(self, x):
        return self.fc1(x[:, :6]) + self.fc2(x[:, 6:])


K, B = 4, 8


def setup(tmp_path, monkeypatch, with_probes=True, steps=3, nesterov=True):
    monkeypatch.delenv("MUONSCOPE_CHANNEL", raising=False)
    monkeypatch.delenv("MUONSCOPE_RUN_DIR", raising=False)
    torch.manual_seed(0)
    model = TwoHeads().double()
    opt = DynMuon(model.parameters(), total_steps=50, lr=0.05, momentum=0.9, nesterov=nesterov)
    gen = torch.Generator().manual_seed(1)
    held_x = torch.randn(K * B, 10, generator=gen, dtype=torch.float64)
    held_y = torch.randn(K * B, 5, generator=gen, dtype=torch.float64)
    loss_of = lambda x, y: 0.5 * ((model(x) - y) ** 2).sum(1).mean()
    probes = dict(probe=lambda: loss_of(held_x, held_y), noise_probe=lambda i: loss_of(held_x[i * B:(i + 1) * B], held_y[i * B:(i + 1) * B]),
                  microbatch_size=B, batch_size=16) if with_probes else {}
    run = muonscope.watch(model, opt, total_steps=50, name="ls", out=str(tmp_path), config={"diagnostics": {"every": 1000, "microbatches": K}}, **probes)
    for _ in range(steps):
        x = torch.randn(16, 10, generator=gen, dtype=torch.float64)
        y = torch.randn(16, 5, generator=gen, dtype=torch.float64)
        loss = loss_of(x, y)
        opt.zero_grad()
        loss.backward()
        run.log(loss=loss)
        opt.step()
    return run, model, opt, held_x.numpy(), held_y.numpy()


def reference(model, opt, hx, hy, k, nesterov=True):
    """numpy: microbatch gradients, the blended source, its SVD, components and the closed-form curvature."""
    w1 = model.fc1.weight.detach().numpy()
    w2 = model.fc2.weight.detach().numpy()
    out = {}
    for name, w, cols in (("fc1.weight", w1, slice(0, 6)), ("fc2.weight", w2, slice(6, 10))):
        grads = []
        for i in range(K):
            x, y = hx[i * B:(i + 1) * B], hy[i * B:(i + 1) * B]
            r = x[:, :6] @ w1.T + x[:, 6:] @ w2.T - y
            grads.append(r.T @ x[:, cols] / B)
        gbar = np.mean(grads, axis=0)
        buf = opt.state[getattr(model, name.split(".")[0]).weight]["momentum_buffer"].numpy().astype(np.float64)
        buf = buf + 0.1 * (gbar - buf)
        src = gbar + 0.9 * (buf - gbar) if nesterov else buf
        u, s, vt = np.linalg.svd(src, full_matrices=False)
        xs = hx[:, cols]
        S = xs.T @ xs / len(xs)
        ranks = measure.log_spaced_ranks(min(src.shape), k)
        dirs = []
        for r in ranks:
            comps = np.array([u[:, r] @ g @ vt[r] for g in grads])
            dirs.append({"rank": r, "sigma": s[r], "curvature": vt[r] @ S @ vt[r], "gradient": comps.mean(), "noiseVariance": comps.var(ddof=1)})
        out[name] = (dirs, np.linalg.norm(gbar))
    return out


def check_against(result, ref):
    assert [l["layer"] for l in result["layers"]] == list(ref)
    for layer in result["layers"]:
        want, gnorm = ref[layer["layer"]]
        assert [d["rank"] for d in layer["directions"]] == [d["rank"] for d in want]
        for got, exp in zip(layer["directions"], want):
            assert got["sigma"] == pytest.approx(exp["sigma"], rel=1e-10)
            assert got["curvature"] == pytest.approx(exp["curvature"], rel=1e-10)
            assert got["gradient"] == pytest.approx(exp["gradient"], abs=1e-10 * gnorm)
            assert got["noiseVariance"] == pytest.approx(exp["noiseVariance"], rel=1e-8)


@pytest.mark.parametrize("nesterov", [True, False])
def test_mode_directions_equal_the_exact_reference(tmp_path, monkeypatch, nesterov):
    run, model, opt, hx, hy = setup(tmp_path, monkeypatch, nesterov=nesterov)
    weights = [p.detach().clone() for p in model.parameters()]
    buffers = [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    ref = reference(model, opt, hx, hy, 3, nesterov)
    reply = measure.answer(run, {"type": "measure", "id": "m1", "what": "modeDirections", "params": {"k": 3, "microbatches": 8, "horizonSteps": 20}})
    assert reply["type"] == "measured", reply
    assert reply["id"] == "m1"
    res = reply["result"]
    check_against(res, ref)
    # The host's context: K capped at the run's noise_probe microbatches, the schedule read over the horizon.
    assert res["step"] == 2 and res["microbatches"] == K and res["microbatchSize"] == B and res["batchSize"] == 16
    assert res["lr"] == 0.05 and res["horizonSteps"] == 20
    assert res["currentP"] == opt.current_p()
    assert res["scheduleP"] == {"start": opt.p_at(3), "end": opt.p_at(23)}
    assert (res["normalization"], res["damping"], res["maxGain"]) == ("frobenius", 1e-3, 10.0)
    # adjust_lr "original": √max(1, rows/cols): fc1 is 5×6, fc2 5×4.
    assert [l["scale"] for l in res["layers"]] == [1.0, pytest.approx(np.sqrt(5 / 4), rel=1e-15)]
    json.dumps(res, allow_nan=False)
    # Measuring changed nothing: weights, momentum, the random stream.
    for a, b in zip(weights, model.parameters()):
        assert torch.equal(a, b.detach())
    for a, p in zip(buffers, model.parameters()):
        assert torch.equal(a, opt.state[p]["momentum_buffer"])
    assert torch.equal(rng, torch.get_rng_state())
    run.close()


def shaped_reference(src, p, eps=1e-3):
    """numpy: DynMuon exact's direction, U·φ_p(S)·Vᵀ with δ = (ε·σ_max)², at Muon's size √min(m, n) (frobenius)."""
    u, s, vt = np.linalg.svd(src, full_matrices=False)
    phi = s * (s * s + (eps * s[0]) ** 2) ** ((p - 1) / 2)
    d = (u * phi) @ vt
    return d * np.sqrt(min(src.shape)) / np.linalg.norm(d)


def test_cross_check_products_equal_the_exact_reference(tmp_path, monkeypatch):
    """gᵀd on each half and dᵀHd = mean ‖D1·x1 + D2·x2‖² (the whole Hessian, both layers) along the run's own d_p,
    for all DynMuon layers even when only one is measured (p ≥ −0.25: the gain bound leaves ε alone there)."""
    run, model, opt, hx, hy = setup(tmp_path, monkeypatch)
    w1, w2 = model.fc1.weight.detach().numpy(), model.fc2.weight.detach().numpy()
    grads = {"fc1.weight": [], "fc2.weight": []}
    for i in range(K):
        x, y = hx[i * B:(i + 1) * B], hy[i * B:(i + 1) * B]
        r = x[:, :6] @ w1.T + x[:, 6:] @ w2.T - y
        grads["fc1.weight"].append(r.T @ x[:, :6] / B)
        grads["fc2.weight"].append(r.T @ x[:, 6:] / B)
    scales = {"fc1.weight": 1.0, "fc2.weight": np.sqrt(5 / 4)}
    sources = {}
    for name, mod in (("fc1.weight", model.fc1), ("fc2.weight", model.fc2)):
        gbar = np.mean(grads[name], axis=0)
        buf = opt.state[mod.weight]["momentum_buffer"].numpy()
        buf = buf + 0.1 * (gbar - buf)
        sources[name] = gbar + 0.9 * (buf - gbar)
    candidates = [-0.25, 0.0, 0.25, 0.5]
    reply = measure.answer(run, {"type": "measure", "id": "c", "what": "modeDirections",
                                 "params": {"k": 3, "microbatches": 4, "horizonSteps": 5, "layers": ["fc2.weight"], "crossCheck": candidates}})
    res = reply["result"]
    assert [l["layer"] for l in res["layers"]] == ["fc2.weight"]
    assert [c["p"] for c in res["crossCheck"]] == candidates
    for c in res["crossCheck"]:
        d = {n: scales[n] * shaped_reference(sources[n], c["p"]) for n in sources}
        ga = {n: np.mean(grads[n][:2], axis=0) for n in grads}
        gb = {n: np.mean(grads[n][2:], axis=0) for n in grads}
        dhd = np.mean(np.sum((hx[:, :6] @ d["fc1.weight"].T + hx[:, 6:] @ d["fc2.weight"].T) ** 2, axis=1))
        assert c["dHd"] == pytest.approx(dhd, rel=1e-10)
        assert c["gdA"] == pytest.approx(sum(np.sum(ga[n] * d[n]) for n in d), rel=1e-9)
        assert c["gdB"] == pytest.approx(sum(np.sum(gb[n] * d[n]) for n in d), rel=1e-9)
    assert refusal(run, params={"k": 3, "microbatches": 4, "horizonSteps": 5, "crossCheck": [0.1, "x"]})[0] == "INVALID_COMMAND"
    run.close()


def test_layers_asked_for_and_the_horizon_clipped_to_the_steps_left(tmp_path, monkeypatch):
    run, model, opt, hx, hy = setup(tmp_path, monkeypatch)
    reply = measure.answer(run, {"type": "measure", "id": "m2", "what": "modeDirections", "params": {"layers": ["fc2.weight"], "k": 12, "microbatches": 4, "horizonSteps": 500}})
    res = reply["result"]
    ref = reference(model, opt, hx, hy, 12)
    check_against(res, {"fc2.weight": ref["fc2.weight"]})
    assert [d["rank"] for d in res["layers"][0]["directions"]] == [0, 1, 2, 3]  # k ≥ rank count: every rank
    assert res["horizonSteps"] == 47 and res["scheduleP"]["end"] == opt.p_at(50)
    run.close()


def test_the_channel_dispatch_answers_at_the_step_boundary(tmp_path, monkeypatch):
    run, *_ = setup(tmp_path, monkeypatch)
    sent = []
    run.channel = type("Stub", (), {"send": lambda self, m: sent.append(m)})()
    try:
        run._apply({"type": "measure", "id": "m3", "what": "modeDirections", "params": {"k": 3, "microbatches": 4, "horizonSteps": 5}})
    finally:
        run.channel = None
    assert [m["type"] for m in sent] == ["measured"] and sent[0]["id"] == "m3"
    run.close()


def refusal(run, **msg):
    reply = measure.answer(run, {"type": "measure", "id": "r", "what": "modeDirections", "params": {"k": 3, "microbatches": 4, "horizonSteps": 5}, **msg})
    assert reply["type"] == "refused" and reply["id"] == "r"
    return reply["code"], reply["message"]


def test_refusals_say_why_and_change_nothing(tmp_path, monkeypatch):
    run, model, *_ = setup(tmp_path / "a", monkeypatch, with_probes=False)
    code, message = refusal(run)
    assert code == "NOT_ALLOWED_NOW" and "probe() and noise_probe(i)" in message
    run.close()
    run, model, *_ = setup(tmp_path / "b", monkeypatch, steps=0)
    code, message = refusal(run)
    assert code == "NOT_ALLOWED_NOW" and "no step" in message
    run.close()
    run, *_ = setup(tmp_path / "c", monkeypatch)
    assert refusal(run, what="hessian")[0] == "INVALID_COMMAND"
    assert refusal(run, params={"k": 0, "microbatches": 4, "horizonSteps": 5})[0] == "INVALID_COMMAND"
    assert refusal(run, params={"k": 3, "microbatches": 1, "horizonSteps": 5})[0] == "INVALID_COMMAND"
    assert refusal(run, params={"k": 3, "microbatches": 4, "horizonSteps": 5, "layers": "fc1.weight"})[0] == "INVALID_COMMAND"
    code, message = refusal(run, params={"k": 3, "microbatches": 4, "horizonSteps": 5, "layers": ["nope"]})
    assert code == "NOT_ALLOWED_NOW" and "exact mode" in message
    run.close()


def test_a_run_without_dynmuon_exact_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("MUONSCOPE_CHANNEL", raising=False)
    model = TwoHeads().double()
    opt = DynMuon(model.parameters(), total_steps=10, mode="lrOnly")
    x = torch.randn(8, 10, dtype=torch.float64)
    loss_of = lambda: (model(x) ** 2).mean()
    run = muonscope.watch(model, opt, total_steps=10, out=str(tmp_path), probe=loss_of, noise_probe=lambda i: loss_of(), microbatch_size=2)
    loss = loss_of()
    loss.backward()
    run.log(loss=loss)
    opt.step()
    code, message = refusal(run)
    assert code == "NOT_ALLOWED_NOW" and "exact mode" in message
    run.close()


E2E_SCRIPT = """
import sys, time, torch, muonscope
from torch import nn
sys.path.insert(0, {tests!r})
from test_measure import TwoHeads, K, B
from muonscope.optim import DynMuon
torch.manual_seed(0)
model = TwoHeads().double()
opt = DynMuon(model.parameters(), total_steps=40, lr=0.02)
g = torch.Generator().manual_seed(1)
W = torch.randn(10, 5, generator=g, dtype=torch.float64)
hx = torch.randn(K * B, 10, generator=g, dtype=torch.float64)
hy = hx @ W + 0.3 * torch.randn(K * B, 5, generator=g, dtype=torch.float64)
lf = lambda x, y: 0.5 * ((model(x) - y) ** 2).sum(1).mean()
run = muonscope.watch(model, opt, total_steps=40, name="measure-e2e", config={{"diagnostics": {{"every": 1000, "microbatches": K}}}},
                      probe=lambda: lf(hx, hy), noise_probe=lambda i: lf(hx[i * B:(i + 1) * B], hy[i * B:(i + 1) * B]), microbatch_size=B, batch_size=16)
for s in range(40):
    time.sleep(0.02)  # a step of real length: the host's request reaches the run before it is far ahead
    x = torch.randn(16, 10, generator=g, dtype=torch.float64)
    y = x @ W + 0.3 * torch.randn(16, 5, generator=g, dtype=torch.float64)
    loss = lf(x, y); opt.zero_grad(); loss.backward(); run.log(loss=loss); opt.step()
run.close()
"""


@pytest.mark.slow
@pytest.mark.skipif(__import__("shutil").which("node") is None, reason="node is not on PATH: this test runs the Node host")
def test_a_run_under_the_host_gets_p_model_records(tmp_path):
    """End to end: `muonscope run` asks every probeEvery steps, this package measures, the host logs p_model."""
    import subprocess
    import sys
    repo = Path(__file__).resolve().parents[3]
    if not (repo / "node_modules" / "tsx").exists():
        pytest.skip("tsx is needed to run the host from source")
    script = tmp_path / "train.py"
    script.write_text(E2E_SCRIPT.format(tests=str(Path(__file__).resolve().parent)))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"name": "measure-e2e", "steps": 40, "advisor": {"mode": "suggest", "probeEvery": 8, "probeDirections": 3, "probeMicrobatches": 8},
                                  # Every due probe: with the shared budget they would be spaced out (a probe costs many 20 ms steps).
                                  "diagnostics": {"adaptive": False}}))
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MUONSCOPE_")}
    out = subprocess.run(["node", "--import", "tsx", str(repo / "trainer" / "cli.ts"), "run", str(config), "--out", str(tmp_path / "runs"), "--", sys.executable, str(script)],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    run_dir = json.loads(out.stdout.splitlines()[0])["runDir"]
    records = [json.loads(l) for l in (Path(run_dir) / "log.ndjson").read_text().splitlines()]
    models = [r for r in records if r["kind"] == "p_model"]
    assert [r["kind"] for r in records if r["kind"] == "alert"] == []
    # Asked after steps 7, 15, 23, 31 and 39 (that one after the final step, unanswered); taken at the next boundary.
    assert len(models) >= 3, [r["step"] for r in models]
    for r in models:
        assert [l["layer"] for l in r["layers"]] == ["fc1.weight", "fc2.weight"]
        assert [[d["rank"] for d in l["directions"]] for l in r["layers"]] == [[0, 1, 4], [0, 1, 3]]
        assert r["microbatches"] == K and r["microbatchSize"] == B
        # The TS probe's candidates and the p in force; a least-squares loss has dᵀHd > 0 along every d_p.
        ps = [c["p"] for c in r["crossCheck"]]
        assert {-0.5, -0.25, 0, 0.25, 0.5} <= set(ps) and len(ps) in (5, 6) and ps == sorted(ps)
        assert all(c["dHd"] > 0 for c in r["crossCheck"]) and r["crossCheckBestP"] in ps
        assert all(d["curvature"] > 0 and d["noiseVariance"] > 0 for l in r["layers"] for d in l["directions"])

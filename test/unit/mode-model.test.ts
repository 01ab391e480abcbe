// trainer/advisor/mode-model.ts and p-scores.ts against test/fixtures/generate_mode_model.py (numpy): the
// expected-value recursion on a small case, the log–log fits on exact power laws, and the ORACLE test on
// DynMuon's mode model — at every probe point (four power-law settings × batch sizes 2, 16, 128 × early,
// middle and late training) the model-based p must lie within one grid step of the p an exhaustive
// Monte-Carlo simulation found best, where the old one-step probe does not, being biased toward the largest p.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  DEFAULT_P_GRID,
  fitLogLog,
  modeGrid,
  recommendP,
  rollForward,
  DIVERGED,
  expectedLoss,
  shapingGains,
  type ModeModelInput,
  type Modes,
  type ShapingNormalisation,
} from '../../trainer/advisor/mode-model.js';
import { bestCandidate, dot, oneStepDecrease, scaleFreeScore, type CandidateValues } from '../../trainer/advisor/p-scores.js';
import { assertAtLeast, assertAtMost, assertBelow } from '../helpers/bounds.js';
import { FIXTURES_DIR } from '../helpers/fixtures.js';

interface RecursionFixture {
  weights: number[];
  curvature: number[];
  sigma: number[];
  noise: number[];
  residual: number[];
  variance: number[];
  lrs: number[];
  damping: number;
  cases: { normalisation: ShapingNormalisation; p: number; gain: number[]; residual: number[]; variance: number[]; loss: number; lossByStep: number[] }[];
  fits: { setting: string; sigma: number[]; curvature: number[]; noiseVariance: number[]; slope: number; intercept: number; beta: number }[];
}

interface ProbePoint {
  setting: string;
  batchSize: number;
  progress: number;
  step: number;
  lrs: number[];
  normalisation: ShapingNormalisation;
  measurements: { ranks: number[]; sigma: number[]; curvature: number[]; gradient: number[]; noiseVariance: number[] };
  medianSnr: number;
  oracle: { p: number; mcLoss: number[]; mcStandardError: number[]; expectedLoss: number[]; expectedP: number };
  oneStep: { p: number; gd: number; gdIndependent: number; dHd: number }[];
  vectors?: { heldOut: number[]; independent: number[]; source: number[]; curvature: number[]; sigma: number[] };
}

interface ProbesFixture {
  grid: number[];
  damping: number;
  modes: number;
  microbatches: number;
  microbatch: number;
  points: ProbePoint[];
}

const read = <T>(file: string): T => JSON.parse(readFileSync(join(FIXTURES_DIR, 'mode-model', file), 'utf8')) as T;
const recursion = read<RecursionFixture>('recursion.json');
const probes = read<ProbesFixture>('probes.json');

/** How many grid steps apart two p values are. */
const gridSteps = (a: number, b: number) => Math.abs(probes.grid.indexOf(a) - probes.grid.indexOf(b));
const label = (pt: ProbePoint) => `${pt.setting} B=${pt.batchSize} q=${pt.progress}`;
const percent = (x: number) => `${(100 * x).toFixed(0)}%`;

function inputOf(pt: ProbePoint): ModeModelInput {
  const m = pt.measurements;
  return {
    directions: m.ranks.map((rank, i) => ({ rank, sigma: m.sigma[i], curvature: m.curvature[i], gradient: m.gradient[i], noiseVariance: m.noiseVariance[i] })),
    rankCount: probes.modes,
    noise: { kind: 'perBatch', batchSize: probes.microbatch },
    gradientSamples: probes.microbatches * probes.microbatch,
    batchSize: pt.batchSize,
    lrs: pt.lrs,
    currentP: 0,
    stepsTaken: pt.step,
    normalisation: pt.normalisation,
    damping: probes.damping,
  };
}

/** Hit rate of `choose` against the oracle, overall and per batch size. */
function hitRate(choose: (pt: ProbePoint) => number) {
  const rows = probes.points.map((pt) => {
    const chosen = choose(pt);
    return { pt, chosen, hit: gridSteps(chosen, pt.oracle.p) <= 1 };
  });
  const rate = (rs: typeof rows) => rs.filter((r) => r.hit).length / rs.length;
  const byBatch = [...new Set(probes.points.map((p) => p.batchSize))].map((b) => ({ batchSize: b, rate: rate(rows.filter((r) => r.pt.batchSize === b)) }));
  return { rows, overall: rate(rows), byBatch };
}

function report(name: string, h: ReturnType<typeof hitRate>): void {
  console.log(`${name}: within one grid step of the oracle at ${percent(h.overall)} of ${h.rows.length} points (${h.byBatch.map((b) => `B=${b.batchSize} ${percent(b.rate)}`).join(', ')})`);
  for (const r of h.rows.filter((x) => !x.hit)) console.log(`  miss ${label(r.pt)}: chose ${r.chosen}, oracle ${r.pt.oracle.p}`);
}

describe('mode model: expected recursion against numpy', () => {
  const modes: Modes = {
    weight: Float64Array.from(recursion.weights),
    curvature: Float64Array.from(recursion.curvature),
    sigma: Float64Array.from(recursion.sigma),
    noise: Float64Array.from(recursion.noise),
  };
  const start = { residual: Float64Array.from(recursion.residual), variance: Float64Array.from(recursion.variance) };
  const TOL = 1e-12; // relative; float64 with the same operations in the same order

  for (const c of recursion.cases) {
    test(`${c.normalisation}, p = ${c.p}: gains, final state and loss after every step`, () => {
      const gains = shapingGains(modes.sigma, modes.weight, c.p, c.normalisation, recursion.damping);
      gains.forEach((g, i) => assertBelow(Math.abs(g - c.gain[i]) / c.gain[i], TOL, `gain[${i}] ${g} vs numpy ${c.gain[i]}`));
      const end = rollForward(modes, gains, recursion.lrs, start);
      end.residual.forEach((r, i) => assertBelow(Math.abs(r - c.residual[i]) / c.residual[i], TOL, `residual[${i}] ${r} vs ${c.residual[i]}`));
      end.variance.forEach((v, i) => assertBelow(Math.abs(v - c.variance[i]) / c.variance[i], TOL, `variance[${i}] ${v} vs ${c.variance[i]}`));
      c.lossByStep.forEach((expected, t) => {
        const { loss } = expectedLoss(modes, rollForward(modes, gains, recursion.lrs.slice(0, t + 1), start));
        assertBelow(Math.abs(loss - expected) / expected, TOL, `loss after step ${t + 1}: ${loss} vs numpy ${expected}`);
      });
    });
  }
});

describe('mode model: fits and mode grid', () => {
  test('noiseless power laws: the slope of ln h on ln σ (GGᵀ ≈ αH: 2) and the noise law β recovered', () => {
    const TOL = 1e-9; // exact data: only round-off in the logs
    for (const f of recursion.fits) {
      const hs = fitLogLog(f.sigma, f.curvature);
      assertBelow(Math.abs(hs.slope - f.slope), TOL, `${f.setting}: slope of h on σ ${hs.slope}, expected ${f.slope}`);
      assertBelow(Math.abs(hs.intercept - f.intercept), TOL, `${f.setting}: intercept ${hs.intercept}, expected ${f.intercept}`);
      assertBelow(Math.abs(1 - hs.r2), TOL, `${f.setting}: r² ${hs.r2}`);
      const noise = fitLogLog(f.curvature, f.noiseVariance);
      assertBelow(Math.abs(noise.slope - f.beta), TOL, `${f.setting}: β ${noise.slope}, expected ${f.beta}`);
    }
  });

  test('the mode grid covers every singular value once: weights sum to the rank count, positions inside their buckets', () => {
    for (const [rankCount, nodes] of [[128, 48], [1000, 48], [16, 48], [7, 3]]) {
      const g = modeGrid(rankCount, nodes);
      const total = g.weight.reduce((a, b) => a + b, 0);
      assert.equal(total, rankCount, `rankCount ${rankCount}, nodes ${nodes}: weights sum to ${total}`);
      assertAtMost(g.position.length, nodes + 1, `rankCount ${rankCount}: ${g.position.length} buckets for ${nodes} nodes`);
      let first = 1;
      g.position.forEach((x, j) => {
        assert.ok(x >= first - 1e-9 && x <= first + g.weight[j] - 1 + 1e-9, `bucket ${j} [${first}, ${first + g.weight[j] - 1}] has position ${x}`);
        first += g.weight[j];
      });
    }
  });
});

describe('mode model: inputs', () => {
  const base = inputOf(probes.points[0]);

  test('directions with non-positive curvature or noise are left out and counted; fewer than 3 usable ranks is an error', () => {
    const bad = { ...base.directions[5], curvature: -0.01 };
    const withBad = recommendP({ ...base, directions: [...base.directions.slice(0, 5), bad, ...base.directions.slice(6)] }, { replicates: 8 });
    assert.equal(withBad.ignoredDirections, 1, `ignored ${withBad.ignoredDirections} directions`);
    const three = base.directions.slice(0, 3);
    assert.throws(() => recommendP({ ...base, directions: [...three.slice(0, 2), { ...three[2], noiseVariance: 0 }] }), /needs 3 directions/);
    assert.throws(() => recommendP({ ...base, lrs: [] }), /lrs is empty/);
  });

  test('a step that makes modes unstable keeps every number finite and is never recommended', () => {
    // An lr so large that at least one grid p makes some mode's |1 − η·s·P·h| > 1 for the whole horizon.
    const huge = recommendP({ ...base, lrs: Array.from({ length: 400 }, () => 1e4) }, { replicates: 8 });
    for (const c of huge.curve) for (const v of [c.loss, c.residual, c.noise, c.bagged, c.low, c.high]) assert.ok(Number.isFinite(v), `p = ${c.p}: ${v}`);
    const diverged = huge.curve.filter((c) => c.loss >= DIVERGED);
    assert.ok(diverged.length > 0, 'some p diverges at this lr');
    assert.ok(!diverged.some((c) => c.p === huge.p) || diverged.length === huge.curve.length, `the recommendation ${huge.p} is not a diverged p`);
  });

  test('noise per sample and per batch of b samples (b × the variance) give the same recommendation and curve', () => {
    const b = probes.microbatch;
    const perBatch = recommendP(base, { replicates: 8 });
    const perSample = recommendP({ ...base, noise: { kind: 'perSample' }, directions: base.directions.map((d) => ({ ...d, noiseVariance: d.noiseVariance * b })) }, { replicates: 8 });
    assert.equal(perSample.p, perBatch.p);
    perSample.curve.forEach((c, i) => assertBelow(Math.abs(c.loss - perBatch.curve[i].loss) / perBatch.curve[i].loss, 1e-12, `p = ${c.p}: loss ${c.loss} vs ${perBatch.curve[i].loss}`));
  });
});

describe('mode model: the oracle on the Kronecker mode model', () => {
  test('the model-based p is within one grid step of the Monte-Carlo oracle at ≥ 80% of the probe points', () => {
    const h = hitRate((pt) => recommendP(inputOf(pt)).p);
    report('mode model', h);
    assertAtLeast(h.overall, 0.8, 'mode-model hit rate');
  });

  test('the old one-step probe (largest η·gᵀd − ½η²·dᵀHd at the current lr) fails it, biased toward the largest p', () => {
    const largest = DEFAULT_P_GRID[DEFAULT_P_GRID.length - 1];
    const choose = (pt: ProbePoint) => bestCandidate(pt.oneStep, (c) => oneStepDecrease(pt.lrs[0], c.gd, c.dHd)).p;
    const h = hitRate(choose);
    report('old one-step probe', h);
    assertBelow(h.overall, 0.8, 'one-step probe hit rate');
    const counts = DEFAULT_P_GRID.map((p) => h.rows.filter((r) => r.chosen === p).length);
    const above = h.rows.filter((r) => r.chosen > r.pt.oracle.p).length / h.rows.length;
    const meanExcess = h.rows.reduce((s, r) => s + r.chosen - r.pt.oracle.p, 0) / h.rows.length;
    console.log(`old one-step probe: choices per p ${DEFAULT_P_GRID.map((p, i) => `${p}: ${counts[i]}`).join(', ')}; above the oracle at ${percent(above)}, by ${meanExcess.toFixed(3)} on average`);
    assert.equal(Math.max(...counts), counts[counts.length - 1], `the largest p ${largest} is the one-step probe's most frequent choice (counts ${counts.join(' ')})`);
    assertAtLeast(above, 2 / 3, 'share of one-step choices above the oracle');
    assertAtLeast(meanExcess, 0.25, 'mean of (one-step choice − oracle p)');
  });

  test('the scale-free score with g from an independent held-out batch is not biased to the largest p where the gradient is noisy', () => {
    const largest = DEFAULT_P_GRID[DEFAULT_P_GRID.length - 1];
    const noisy = probes.points.filter((pt) => pt.batchSize === 2 && pt.progress >= 0.4);
    const pick = (pt: ProbePoint, gd: (c: ProbePoint['oneStep'][number]) => number) =>
      bestCandidate(pt.oneStep.map((c): CandidateValues => ({ p: c.p, gd: gd(c), dHd: c.dHd })), (c) => scaleFreeScore(c.gd, c.dHd)).p;
    const independent = noisy.map((pt) => pick(pt, (c) => c.gdIndependent));
    const sameBatch = noisy.map((pt) => pick(pt, (c) => c.gd));
    const oneStep = noisy.map((pt) => bestCandidate(pt.oneStep, (c) => oneStepDecrease(pt.lrs[0], c.gd, c.dHd)).p);
    const share = (ps: number[]) => ps.filter((p) => p === largest).length / ps.length;
    console.log(`noisy points (B = 2, q ≥ 0.4; ${noisy.length}): largest p chosen by the one-step probe ${percent(share(oneStep))}, scale-free same batch ${percent(share(sameBatch))}, scale-free independent batch ${percent(share(independent))}; oracle ${noisy.map((pt) => pt.oracle.p).join(' ')}, independent ${independent.join(' ')}`);
    assertBelow(share(independent), share(oneStep), 'share of independent-batch scale-free choices at the largest p, against the one-step probe');
    assertAtMost(share(independent), 1 / 3, 'share of independent-batch scale-free choices at the largest p');
  });

  test('the one-step values are the dot products of the stored vectors (the fixture means what it says)', () => {
    const pt = probes.points.find((p) => p.vectors !== undefined);
    assert.ok(pt?.vectors, 'one probe point carries its vectors');
    const v = pt.vectors;
    const sigmaMax = Math.max(...v.sigma);
    for (const c of pt.oneStep) {
      const shaped = v.source.map((s, i) => s * (v.sigma[i] ** 2 + (probes.damping * sigmaMax) ** 2) ** ((c.p - 1) / 2));
      const size = Math.sqrt(shaped.length / dot(shaped, shaped)); // the old probe's candidates are at Muon's Frobenius size
      const d = shaped.map((x) => x * size);
      const hd = d.map((x, i) => x * v.curvature[i]);
      for (const [name, ours, numpy] of [['gᵀd', dot(v.heldOut, d), c.gd], ['g₂ᵀd', dot(v.independent, d), c.gdIndependent], ['dᵀHd', dot(d, hd), c.dHd]] as const) {
        assertBelow(Math.abs(ours - numpy), 1e-10 * (Math.abs(numpy) + 1e-12), `p = ${c.p}: ${name} ${ours} vs numpy ${numpy}`);
      }
    }
  });
});

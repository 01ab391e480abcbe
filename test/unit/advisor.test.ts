// trainer/advisor: each rule on its own (fires on the evidence it names, stays quiet just short of its
// thresholds), the advisor's rate limit, deduplication, supersession and dismissal memory, the p-probe
// against numpy on a quadratic loss (test/fixtures/generate_advisor.py), the evidence harness's statistics
// against numpy, and apply / dismiss through the trainer's command queue with their audit records.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  Advisor,
  instabilityRule,
  keepPPositiveRule,
  movePNegativeRule,
  Observations,
  plateauRule,
  probeP,
  pProbeRule,
  SuggestionBook,
  type RuleSettings,
} from '../../trainer/advisor/index.js';
import type { Landscape, Theta } from '../../trainer/diagnostics/index.js';
import type { LogRecord, NewLogRecord, RecordOf } from '../../common/protocol.js';
import { readRunLog, RunLog } from '../../common/run-folder/log.js';
import { startSession } from '../../trainer/run/session.js';
import { AdvisorRunner } from '../../trainer/run/advisor-runner.js';
import { Trainer } from '../../trainer/run/trainer.js';
import { bootstrapMedianCi, median, percentile, stepsToTarget } from '../bench/advisor/stats.js';
import { assertAbove, assertAtLeast, assertBelow } from '../helpers/bounds.js';
import { loadF32, loadF64, loadIndex, type ArrayRef } from '../helpers/fixtures.js';
import { tinyMlpConfig, tinyRunParts } from '../helpers/tiny-run.js';
import { SLOW_TEST, waitUntil } from '../helpers/wait.js';

const S: RuleSettings = { maxAge: 100 };
let seq = 0;
const rec = (r: NewLogRecord): LogRecord => ({ ...r, seq: ++seq, t: 0 }) as LogRecord;

const runStarted = (optimizer: string, lossFloor: number | null = 0.01) =>
  rec({ kind: 'run_started', step: 0, runId: 'r', protocol: 1, config: { optimizer: { type: optimizer } }, backend: { chosen: 'cpu', skipped: [] }, kernels: { chosen: 'x', skipped: [] }, totalSteps: 1000, task: { name: 't', lossFloor, lossFloorLabel: '' }, params: [] });

function observe(optimizer: string, records: NewLogRecord[], lossFloor: number | null = 0.01): Observations {
  const o = new Observations();
  o.ingest(runStarted(optimizer, lossFloor));
  for (const r of records) o.ingest(rec(r));
  return o;
}

const stepRec = (step: number, loss: number, p: number | null = 0, lr = 0.02): NewLogRecord => ({ kind: 'step', step, loss, lr, p, stepMs: 10 });
const curv = (step: number, etaStar: number | null, kappa = 1, lr = 0.02): NewLogRecord => ({ kind: 'curvature', step, layer: null, kappaUpdate: kappa, etaActual: lr, etaStarBefore: etaStar });
const overshoot = (step: number, fraction: number, steps = 20): NewLogRecord => ({ kind: 'curvature', step, layer: null, etaActual: 0.02, overshootFraction: fraction, overshootSteps: steps, overshootCosine: -0.1 });
const dirs = (step: number, layer: string, kTop: number, kBottom: number): NewLogRecord => ({
  kind: 'curvature',
  step,
  layer,
  etaActual: 0.02,
  etaStar: null,
  edgeReference: 100,
  directions: { top: [{ index: 0, sigma: 1, kappa: kTop }], bottom: [{ index: 9, sigma: 0.01, kappa: kBottom }] },
});
/** A noise record with the batch SNR along the top and bottom direction; the top's 95% interval defaults to the point. */
const noise = (step: number, layer: string, top: number, bottom: number, [topLow, topHigh] = [top, top]): NewLogRecord => ({
  kind: 'noise', step, layer, bSimple: 10, batchSize: 16, snrOf: 'batch', snrTop: [top], snrTopLow: [topLow], snrTopHigh: [topHigh], snrBottom: [bottom],
});
const steadyLosses = (from: number, n: number, loss = 1, p: number | null = 0) => Array.from({ length: n }, (_, i) => stepRec(from + i, loss, p));

describe('rules', () => {
  test('instability: two kinds of evidence halve the lr; one alone does not', () => {
    // η/η*_before = 0.02/0.008 = 2.5 > 2 on two consecutive probes, plus 16 of the last 20 steps with g_{t+1}ᵀd_t < 0.
    const both = observe('muon', [...steadyLosses(0, 50), curv(40, 0.008), curv(49, 0.008), overshoot(49, 0.8)]);
    const p = instabilityRule(both, S)!;
    assert.ok(p, 'fires');
    assert.deepEqual(p.change, { kind: 'set_lr', lr: 0.01, reason: 'advisor: instability' });
    assert.deepEqual(p.evidence.map((e) => e.name), ['η/η* before the step', 'η/η* before the step', 'fraction of the last 20 steps with g_{t+1}ᵀd_t < 0']);
    assert.equal(p.evidence[0].value, 2.5);
    assert.equal(p.confidence, 0.7);
    // Only the ratio: one kind of evidence, however far κ is past gradient descent's 2/η (no longer evidence).
    assert.equal(instabilityRule(observe('muon', [...steadyLosses(0, 50), curv(40, 0.008, 1e4), curv(49, 0.008, 1e4)]), S), null);
    // Nor is critical sharpness past 2/lr: from the same point and direction it is η* again.
    const sharp: NewLogRecord = { kind: 'curvature', step: 49, layer: null, etaActual: 0.02, criticalSharpness: 1e4 };
    assert.equal(instabilityRule(observe('muon', [...steadyLosses(0, 50), curv(40, 0.008), curv(48, 0.008), sharp]), S), null);
    // Ratio just under 2 on one of the two probes: no ratio evidence, the overshoot fraction alone is not enough.
    assert.equal(instabilityRule(observe('muon', [...steadyLosses(0, 50), curv(40, 0.0101), curv(49, 0.008), overshoot(49, 0.8)]), S), null);
    // 14 of 20 (0.7) is not above the threshold; nor is a window shorter than 20 steps.
    assert.equal(instabilityRule(observe('muon', [...steadyLosses(0, 50), curv(40, 0.008), curv(49, 0.008), overshoot(49, 0.7)]), S), null);
    assert.equal(instabilityRule(observe('muon', [...steadyLosses(0, 50), curv(40, 0.008), curv(49, 0.008), overshoot(49, 0.9, 10)]), S), null);
    // A loss spike (mean of the last 5 = 2× the median before) with a persistent overshoot.
    const spike = observe('muon', [...steadyLosses(0, 45), ...[45, 46, 47, 48, 49].map((s) => stepRec(s, 2)), overshoot(49, 0.85)]);
    assert.deepEqual(instabilityRule(spike, S)!.evidence.map((e) => e.name).sort(), ['mean loss of the last 5 steps / median of the 30 before', 'fraction of the last 20 steps with g_{t+1}ᵀd_t < 0'].sort());
    // Stale curvature (older than maxAge) is not used.
    assert.equal(instabilityRule(observe('muon', [curv(40, 0.008, 150), curv(49, 0.008, 150), ...steadyLosses(200, 50)]), S), null);
  });

  test('keep p positive: κ rising with σ and a high top-direction SNR, only while p ≤ 0 and only for DynMuon', () => {
    const evidence = [dirs(90, 'w1', 10, 1), dirs(95, 'w2', 6, 2), noise(90, 'w1', 5, 0.5), noise(95, 'w2', 3, 0.4)];
    const p = keepPPositiveRule(observe('dynmuon', [...evidence, stepRec(99, 1, -0.25)]), S)!;
    assert.equal(p.rule, 'keep_p_positive');
    assert.deepEqual(p.change, { kind: 'set_schedule', schedule: { type: 'constant', p: 0.25 }, fromStep: 100, reason: 'advisor: top directions still learning' });
    assert.equal(p.evidence[0].value, 6.5, 'median of κ_top/κ_bottom over layers (10 and 3)');
    assert.equal(p.evidence[1].value, 4, 'median lower bound of the top SNR (5 and 3)');
    assert.equal(keepPPositiveRule(observe('dynmuon', [...evidence, stepRec(99, 1, 0.3)]), S), null, 'p already positive');
    assert.equal(keepPPositiveRule(observe('muon', [...evidence, stepRec(99, 1, null)]), S), null, 'no schedule to change');
    assert.equal(keepPPositiveRule(observe('dynmuon', [dirs(90, 'w1', 3, 2), noise(90, 'w1', 5, 0.5), stepRec(99, 1, -0.25)]), S), null, 'κ ratio 1.5 ≤ 2');
    assert.equal(keepPPositiveRule(observe('dynmuon', [dirs(90, 'w1', 10, 1), noise(90, 'w1', 1.9, 0.5), stepRec(99, 1, -0.25)]), S), null, 'SNR 1.9 ≤ 2');
    assert.equal(keepPPositiveRule(observe('dynmuon', [dirs(90, 'w1', 10, 1), noise(90, 'w1', 5, 0.5, [1.5, 9]), stepRec(99, 1, -0.25)]), S), null, 'SNR 5 but its lower bound 1.5 ≤ 2');
    const microbatch = { ...noise(90, 'w1', 5, 0.5), snrOf: 'microbatch' } as NewLogRecord;
    assert.equal(keepPPositiveRule(observe('dynmuon', [dirs(90, 'w1', 10, 1), microbatch, stepRec(99, 1, -0.25)]), S), null, 'a microbatch SNR is not in the thresholds\' units');
  });

  test('move p negative: top directions are noise, the bottom ones carry more signal, κ no longer rising', () => {
    const p = movePNegativeRule(observe('dynmuon', [dirs(90, 'w1', 1.5, 1), noise(90, 'w1', 0.4, 0.9), stepRec(99, 1, 0.25)]), S)!;
    assert.equal(p.rule, 'move_p_negative');
    assert.deepEqual(p.change, { kind: 'set_schedule', schedule: { type: 'constant', p: -0.25 }, fromStep: 100, reason: 'advisor: top directions converged' });
    assert.deepEqual(p.evidence.map((e) => e.value), [0.4, 0.9, 1.5]);
    assert.equal(movePNegativeRule(observe('dynmuon', [noise(90, 'w1', 1.1, 2), stepRec(99, 1, 0.25)]), S), null, 'top SNR 1.1 ≥ 1');
    assert.equal(movePNegativeRule(observe('dynmuon', [noise(90, 'w1', 0.4, 0.9, [0, 1.3]), stepRec(99, 1, 0.25)]), S), null, 'top SNR 0.4 but its upper bound 1.3 ≥ 1');
    assert.equal(movePNegativeRule(observe('dynmuon', [noise(90, 'w1', 0.4, 0.3), stepRec(99, 1, 0.25)]), S), null, 'bottom no better than top');
    assert.equal(movePNegativeRule(observe('dynmuon', [dirs(90, 'w1', 10, 1), noise(90, 'w1', 0.4, 0.9), stepRec(99, 1, 0.25)]), S), null, 'κ still rising with σ');
    assert.equal(movePNegativeRule(observe('dynmuon', [noise(90, 'w1', 0.4, 0.9), stepRec(99, 1, -0.25)]), S), null, 'already negative');
  });

  test('p-probe: the best candidate when it beats the p in force by more than 10%', () => {
    const probe = (cands: [number, number][], currentP = 0): NewLogRecord => ({
      kind: 'p_probe',
      step: 98,
      currentP,
      eta: 0.02,
      candidates: cands.map(([p, dec]) => ({ p, predictedDecrease: dec, gd: 1, dHd: 1 })),
      bestP: cands.reduce((a, b) => (b[1] > a[1] ? b : a))[0],
      heldOutExamples: 64,
      costMs: 5,
      overheadPct: 1,
    });
    const p = pProbeRule(observe('dynmuon', [probe([[-0.25, 1], [0, 1], [0.25, 1.2], [0.5, 0.5]]), stepRec(99, 1, 0)]), S)!;
    assert.deepEqual(p.change, { kind: 'set_schedule', schedule: { type: 'constant', p: 0.25 }, fromStep: 100, reason: 'advisor: p-probe at step 98' });
    assert.equal(p.evidence.at(-1)!.value, 0.2);
    assertBelow(Math.abs(p.confidence - 0.45), 1e-12, `confidence 0.4 + 0.5·0.2 = 0.5, capped at 0.45 by the benchmark evidence; got ${p.confidence}`);
    assert.equal(pProbeRule(observe('dynmuon', [probe([[0, 1], [0.25, 1.09]]), stepRec(99, 1, 0)]), S), null, 'a 9% gain is within the margin');
    assert.equal(pProbeRule(observe('dynmuon', [probe([[0, -1], [0.25, -0.5]]), stepRec(99, 1, 0)]), S), null, 'no candidate decreases the loss');
    assert.equal(pProbeRule(observe('muon', [probe([[0, 1], [0.25, 2]]), stepRec(99, 1, null)]), S), null, 'Muon has no p to set');
    assert.equal(pProbeRule(observe('dynmuon', [probe([[0, 1], [0.25, 2]]), stepRec(300, 1, 0)]), S), null, 'stale probe');
  });

  test('plateau: a stalled validation loss with steps far below η* raises the lr; at the floor it is quiet', () => {
    const evals = (values: number[]) => values.map((v, i) => ({ kind: 'eval', step: 50 * (i + 1) - 1, valLoss: v }) as NewLogRecord);
    const timid = [curv(180, 0.2), curv(199, 0.1)]; // η_actual/η* = 0.1 and 0.2
    const p = plateauRule(observe('muon', [...evals([0.5, 0.499, 0.4985, 0.498]), ...timid, stepRec(199, 0.5)]), S)!;
    assert.deepEqual(p.change, { kind: 'set_lr', lr: 0.03, reason: 'advisor: plateau with timid steps' });
    assert.equal(plateauRule(observe('muon', [...evals([0.5, 0.49, 0.48, 0.47]), ...timid, stepRec(199, 0.5)]), S), null, 'still improving (6%)');
    assert.equal(plateauRule(observe('muon', [...evals([0.5, 0.499, 0.4985, 0.498]), curv(180, 0.05), curv(199, 0.05), stepRec(199, 0.5)]), S), null, 'η_actual/η* = 0.4: steps are not timid');
    assert.equal(plateauRule(observe('muon', [...evals([0.0102, 0.0102, 0.0102, 0.0102]), ...timid, stepRec(199, 0.0102)], 0.01), S), null, 'at the floor');
  });
});

describe('the advisor', () => {
  const pushCase = (advisor: Advisor, step: number, p: number) => {
    for (const r of [dirs(step - 5, 'w1', 1.5, 1), noise(step - 5, 'w1', 0.4, 0.9), stepRec(step, 1, p)]) advisor.ingest(rec(r));
  };
  const log = (advisor: Advisor, records: NewLogRecord[]) => records.map((r) => (advisor.ingest(rec(r)), r));

  test('one suggestion per target, rate-limited, never the same change twice, superseding older ones', () => {
    const advisor = new Advisor({ cooldownSteps: 50, maxAge: 100 });
    advisor.ingest(runStarted('dynmuon'));
    pushCase(advisor, 100, 0.25);
    const first = log(advisor, advisor.evaluate(100));
    assert.deepEqual(first.map((r) => [r.kind, (r as RecordOf<'suggestion'>).id]), [['suggestion', 's100-move_p_negative']]);
    pushCase(advisor, 120, 0.25);
    assert.deepEqual(advisor.evaluate(120), [], 'within the cooldown');
    pushCase(advisor, 160, 0.25);
    assert.deepEqual(advisor.evaluate(160), [], 'the same change is still pending');
    // A different change for the same target supersedes the pending one.
    for (const r of [dirs(165, 'w1', 10, 1), noise(165, 'w1', 5, 0.5), stepRec(170, 1, -0.25)]) advisor.ingest(rec(r));
    const next = log(advisor, advisor.evaluate(170));
    assert.deepEqual(next.map((r) => r.kind), ['suggestion_outcome', 'suggestion']);
    assert.deepEqual([(next[0] as RecordOf<'suggestion_outcome'>).id, (next[0] as RecordOf<'suggestion_outcome'>).outcome], ['s100-move_p_negative', 'superseded']);
    assert.equal((next[1] as RecordOf<'suggestion'>).rule, 'keep_p_positive');
    assert.deepEqual(advisor.book.all().map((s) => s.id), ['s170-keep_p_positive']);
  });

  test('a dismissed change is not proposed again for four cooldowns', () => {
    const advisor = new Advisor({ cooldownSteps: 10, maxAge: 100 });
    advisor.ingest(runStarted('dynmuon'));
    pushCase(advisor, 100, 0.25);
    log(advisor, advisor.evaluate(100));
    advisor.ingest(rec({ kind: 'suggestion_outcome', step: 101, id: 's100-move_p_negative', outcome: 'dismissed', source: 'user', reason: 'no' }));
    pushCase(advisor, 130, 0.25);
    assert.deepEqual(advisor.evaluate(130), [], 'dismissed 29 steps ago');
    pushCase(advisor, 145, 0.25);
    assert.equal(advisor.evaluate(145).length, 1, 'forgotten after 40 steps');
  });

  test('the suggestion book follows suggestion and outcome records', () => {
    const book = new SuggestionBook();
    const s = rec({ kind: 'suggestion', step: 1, id: 'a', rule: 'plateau', title: 't', change: { kind: 'set_lr', lr: 0.1 }, evidence: [], confidence: 0.3, expectedEffect: 'e' });
    book.ingest(s);
    assert.equal(book.get('a')?.id, 'a');
    book.ingest(rec({ kind: 'suggestion_outcome', step: 2, id: 'a', outcome: 'applied', source: 'u', reason: '' }));
    assert.equal(book.get('a'), undefined);
    assert.equal(book.outcome('a')?.outcome, 'applied');
  });
});

describe('the p-probe against numpy', () => {
  test('gᵀd, dᵀHd and the predicted decrease of every candidate on a quadratic loss', async () => {
    type Fixture = {
      probe: {
        layers: { name: string; rows: number; cols: number; scale: number; momentum: ArrayRef }[];
        biasLength: number;
        A: ArrayRef;
        b: ArrayRef;
        theta: ArrayRef;
        eta: number;
        damping: number;
        candidates: { p: number; gd: number; dHd: number; predictedDecrease: number }[];
        bestP: number;
      };
    };
    const f = loadIndex<Fixture>('advisor').probe;
    const a = loadF64('advisor', f.A);
    const b = loadF64('advisor', f.b);
    const flat = loadF32('advisor', f.theta);
    const n = b.length;
    const blocks = [...f.layers.map((l) => ({ name: l.name, size: l.rows * l.cols })), { name: 'bias', size: f.biasLength }];
    const split = (x: Float32Array | Float64Array): Theta => {
      const out: Theta = {};
      let o = 0;
      for (const blk of blocks) (out[blk.name] = Float32Array.from(x.subarray(o, o + blk.size))), (o += blk.size);
      return out;
    };
    const join_ = (t: Theta) => {
      const x = new Float64Array(n);
      let o = 0;
      for (const blk of blocks) x.set(t[blk.name], o), (o += blk.size);
      return x;
    };
    // The exact quadratic in float64, handed out in float32 like a model's gradients.
    const quadratic: Landscape = {
      names: blocks.map((x) => x.name),
      shapes: Object.fromEntries(blocks.map((x) => [x.name, [x.size]])),
      async loss(t) {
        const x = join_(t);
        let l = 0;
        for (let i = 0; i < n; i++) {
          let ax = 0;
          for (let j = 0; j < n; j++) ax += a[i * n + j] * x[j];
          l += 0.5 * x[i] * ax - b[i] * x[i];
        }
        return l;
      },
      async gradient(t) {
        const x = join_(t);
        const g = new Float64Array(n);
        for (let i = 0; i < n; i++) {
          let ax = 0;
          for (let j = 0; j < n; j++) ax += a[i * n + j] * x[j];
          g[i] = ax - b[i];
        }
        return { loss: await this.loss(t), grads: split(g) };
      },
    };
    const layers = f.layers.map((l) => ({ name: l.name, rows: l.rows, cols: l.cols, scale: l.scale, source: loadF32('advisor', l.momentum) }));
    // The fixture's numpy reference shapes with the plain damping at Muon's Frobenius size.
    const result = await probeP(quadratic, split(flat), layers, f.eta, { damping: f.damping, maxGain: null, normalization: 'frobenius' }, f.candidates.map((c) => c.p));
    // fp32 gradients differenced at ε ≈ 1e-3·(1+‖θ‖)/‖d‖: dᵀHd carries fp32 round-off amplified by 1/ε
    // (measured worst 1.6e-5 relative); gᵀd, the mean of the two gradients, is good to ~1e-8.
    const TOL = 5e-5;
    for (const [i, c] of f.candidates.entries()) {
      const got = result.candidates[i];
      for (const key of ['gd', 'dHd', 'predictedDecrease'] as const) {
        const rel = Math.abs(got[key] - c[key]) / Math.abs(c[key]);
        assertBelow(rel, TOL, `p=${c.p} ${key}: ${got[key]} vs numpy ${c[key]} (relative ${rel.toExponential(2)})`);
      }
    }
    assert.equal(result.bestP, f.bestP);
  });
});

describe('the harness statistics against numpy', () => {
  type Stats = { evals: [number, number][]; targets: number[]; crossings: (number | null)[]; values: number[]; median: number; percentiles: Record<string, number>; bootstrap: { resamples: number; seed: number; low: number; high: number } };
  const f = loadIndex<{ stats: Stats }>('advisor').stats;

  test('steps to target interpolate between evaluations; never reached is null', () => {
    f.targets.forEach((t, i) => {
      const got = stepsToTarget(f.evals, t);
      if (f.crossings[i] === null) assert.equal(got, null);
      else assertBelow(Math.abs(got! - f.crossings[i]!), 1e-9, `target ${t}: ${got} vs ${f.crossings[i]}`);
    });
  });

  test('median, percentiles and the seeded bootstrap CI equal numpy on the same resampling stream', () => {
    assert.equal(median(f.values), f.median);
    for (const [q, v] of Object.entries(f.percentiles)) assertBelow(Math.abs(percentile(f.values, Number(q)) - v), 1e-12, `percentile ${q}`);
    const ci = bootstrapMedianCi(f.values, f.bootstrap.resamples, f.bootstrap.seed);
    assert.ok(Math.abs(ci.low - f.bootstrap.low) < 1e-12 && Math.abs(ci.high - f.bootstrap.high) < 1e-12, `${JSON.stringify(ci)} vs ${JSON.stringify(f.bootstrap)}`);
  });
});

const tmp = () => mkdtempSync(join(tmpdir(), 'muonscope-advisor-'));

const mlpConfig = (overrides: Record<string, unknown> = {}) => tinyMlpConfig({ name: 'advisor', checkpointEvery: 1000, ...overrides });

describe('suggestions through the trainer', () => {
  test('apply carries out the change, audited and linked to the suggestion; dismiss and double use are refused cleanly', SLOW_TEST, async () => {
    const config = mlpConfig({ steps: 1000 });
    const { workload, optimizer } = await tinyRunParts(config);
    const dir = tmp();
    const log = new RunLog(join(dir, 'log.ndjson'));
    const settings = { runId: 'adv', totalSteps: 1000, evalEvery: 100, checkpointEvery: 1000, checkpointDir: join(dir, 'ck'), diagnosticsEvery: 1000, diagnosticsAdaptive: true, diagnosticsBudgetPct: 10 };
    const trainer = new Trainer(settings, workload, optimizer, log, 0);
    const running = trainer.run();
    await trainer.enqueue({ kind: 'pause' }, { source: 'test' });
    const at = trainer.step;
    log.append({ kind: 'suggestion', step: at, id: 'sx', rule: 'p_probe', title: 'Set p to 0.5', change: { kind: 'set_schedule', schedule: { type: 'constant', p: 0.5 }, fromStep: 0, reason: 'r' }, evidence: [], confidence: 0.9, expectedEffect: 'e' });
    log.append({ kind: 'suggestion', step: at, id: 'sy', rule: 'plateau', title: 'Raise lr', change: { kind: 'set_lr', lr: 0.03 }, evidence: [], confidence: 0.3, expectedEffect: 'e' });

    const applied = await trainer.enqueue({ kind: 'apply_suggestion', id: 'sx' }, { source: 'dashboard', id: 'c1' });
    assert.match(applied.detail!, /^applied sx; p from step \d+: 0\.5000/);
    const dismissed = await trainer.enqueue({ kind: 'dismiss_suggestion', id: 'sy', reason: 'not now' }, { source: 'dashboard' });
    assert.equal(dismissed.detail, 'dismissed sy');
    await assert.rejects(trainer.enqueue({ kind: 'apply_suggestion', id: 'sx' }, { source: 'dashboard' }), /already applied/);
    await assert.rejects(trainer.enqueue({ kind: 'dismiss_suggestion', id: 'nope' }, { source: 'dashboard' }), /no suggestion "nope"/);
    await trainer.enqueue({ kind: 'step', n: 1 }, { source: 'test' });
    await waitUntil('the pause after the one step asked for', () => trainer.currentState, { until: (s) => s === 'paused' });
    await trainer.enqueue({ kind: 'stop' }, { source: 'test' });
    await running;
    log.close();
    workload.dispose();

    const records = readRunLog(join(dir, 'log.ndjson')).records;
    const control = records.find((r): r is RecordOf<'control'> => r.kind === 'control' && r.command === 'set_schedule')!;
    assert.deepEqual([control.source, control.reason, control.commandId], ['dashboard', 'suggestion sx: Set p to 0.5', 'c1']);
    assert.equal((control.new as { fromStep: number }).fromStep, at, 'a suggestion made for an earlier step starts now, not in the past');
    const outcomes = records.filter((r): r is RecordOf<'suggestion_outcome'> => r.kind === 'suggestion_outcome').map((r) => [r.id, r.outcome, r.source, r.reason]);
    assert.deepEqual(outcomes, [['sx', 'applied', 'dashboard', ''], ['sy', 'dismissed', 'dashboard', 'not now']]);
    const after = records.filter((r): r is RecordOf<'step'> => r.kind === 'step').at(-1)!;
    assert.equal(after.p, 0.5, 'the applied schedule is in force at the next step');
    assert.ok(!records.some((r) => r.kind === 'control' && r.command === 'set_lr'), 'the dismissed change was not made');
  });

  test('auto mode: the p-probe runs at its cadence and confident suggestions are applied by the advisor', SLOW_TEST, async () => {
    const config = mlpConfig({
      steps: 60,
      optimizer: { type: 'dynmuon', lr: 0.02, schedule: { type: 'constant', p: -0.25 } },
      diagnostics: { every: 10, adaptive: false },
      advisor: { mode: 'auto', probeEvery: 20, cooldownSteps: 20 },
      // A batch large enough that the top direction's batch SNR clears 2 at its lower 95% bound (at 32 the
      // point estimates are 3–5 but the intervals reach below 1: the signal is not established).
      batchSize: 128,
    });
    const session = await startSession({ config, configDir: process.cwd(), runsRoot: tmp() });
    await session.done;
    const records = readRunLog(session.paths.log).records;
    const probes = records.filter((r): r is RecordOf<'p_probe'> => r.kind === 'p_probe');
    assert.deepEqual(probes.map((p) => p.step), [19, 39, 59]);
    assert.deepEqual(probes[0].candidates.map((c) => c.p), [-0.25, 0, 0.25, 0.5]);
    assert.equal(probes[0].heldOutExamples, config.advisor.probeBatches * config.batchSize, `the default probeBatches (${config.advisor.probeBatches}) of batch ${config.batchSize}`);
    const suggestions = records.filter((r): r is RecordOf<'suggestion'> => r.kind === 'suggestion');
    // Deterministic on the cpu backend: early on, κ rises with σ and the top directions carry signal, so
    // keep_p_positive fires against p = −0.25 with confidence above the auto threshold (step 0: lower bound 3.7).
    const confident = suggestions.filter((x) => x.confidence >= 0.5);
    assertAtLeast(confident.length, 1, `a confident suggestion against p = −0.25: ${suggestions.map((x) => `${x.id} ${x.confidence.toFixed(2)}`)}`);
    for (const s of confident) {
      const outcome = records.find((r): r is RecordOf<'suggestion_outcome'> => r.kind === 'suggestion_outcome' && r.id === s.id);
      assert.deepEqual([outcome?.outcome, outcome?.source], ['applied', 'advisor (auto)'], `${s.id} applied automatically`);
      const control = records.find((r): r is RecordOf<'control'> => r.kind === 'control' && r.seq > s.seq && r.command === s.change.kind);
      assert.equal(control?.source, 'advisor (auto)');
      const nextStep = records.find((r): r is RecordOf<'step'> => r.kind === 'step' && r.seq > control!.seq);
      if (nextStep && s.change.kind === 'set_schedule') assert.equal(nextStep.p, (s.change.schedule as { p: number }).p, 'the suggested p is in force');
    }
  });

  test('the p-probe stays within the diagnostics budget: with 1% of training time only the first runs', SLOW_TEST, async () => {
    const config = mlpConfig({
      steps: 60,
      optimizer: { type: 'dynmuon', lr: 0.02 },
      diagnostics: { every: 1000, adaptive: true, budgetPct: 1 },
      advisor: { mode: 'suggest', probeEvery: 10 },
    });
    const session = await startSession({ config, configDir: process.cwd(), runsRoot: tmp() });
    await session.done;
    const probes = readRunLog(session.paths.log).records.filter((r): r is RecordOf<'p_probe'> => r.kind === 'p_probe');
    assert.equal(probes.length, 1, `one probe, then over budget: ${probes.map((p) => `${p.step}: ${p.overheadPct.toFixed(1)}%`)}`);
    assertAbove(probes[0].overheadPct, 1, `its cost is reported as a share of training time: ${probes[0].overheadPct}%`);
  });

  test('on resume the history is replayed into the advisor and suggestions pending from before are superseded', SLOW_TEST, async () => {
    const config = mlpConfig();
    const { workload, optimizer } = await tinyRunParts(config);
    const path = join(tmp(), 'log.ndjson');
    const before = new RunLog(path);
    before.append({ kind: 'run_started', step: 0, runId: 'r', protocol: 1, config: { optimizer: { type: 'dynmuon' } }, backend: { chosen: 'cpu', skipped: [] }, kernels: { chosen: 'x', skipped: [] }, totalSteps: 100, task: { name: 't', lossFloor: null, lossFloorLabel: '' }, params: [] });
    before.append({ kind: 'step', step: 9, loss: 1, lr: 0.02, p: 0.1, stepMs: 1 });
    before.append({ kind: 'suggestion', step: 9, id: 's9-plateau', rule: 'plateau', title: 't', change: { kind: 'set_lr', lr: 0.03 }, evidence: [], confidence: 0.3, expectedEffect: 'e' });
    before.close();
    const log = new RunLog(path);
    const runner = new AdvisorRunner(workload, optimizer, log, { mode: 'suggest', probeEvery: 0, probeBatches: 1, cooldownSteps: 50, maxAge: 100, autoMinConfidence: 0.5 }, async () => undefined, 10);
    assert.deepEqual([runner.advisor.observations.step, runner.advisor.observations.p], [9, 0.1], 'observations restored from the log');
    const last = log.readAfter(3, 10);
    assert.deepEqual(last.map((r) => [r.kind, (r as { id?: string }).id, (r as { outcome?: string }).outcome]), [['suggestion_outcome', 's9-plateau', 'superseded']]);
    assert.deepEqual(runner.advisor.book.all(), [], 'nothing pending after the resume');
    runner.dispose();
    log.close();
    workload.dispose();
  });
});

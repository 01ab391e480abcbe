// trainer/advisor: each rule on its own (fires on the evidence it names, stays quiet just short of its
// thresholds), schedule changes (retime, range, hold, set) checked by evaluating the new schedule, the
// advisor's rate limit, deduplication, supersession and dismissal memory, the p-probe
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
  KEEP_P_POSITIVE_CONFIDENCE_CAP,
  movePNegativeRule,
  Observations,
  P_MODEL_CONFIDENCE_CAP,
  plateauNoiseRule,
  plateauRule,
  pModelRule,
  probeP,
  SuggestionBook,
  type RuleSettings,
} from '../../trainer/advisor/index.js';
import { changeSchedule, LOGISTIC_EDGE, P_GRID_STEP } from '../../trainer/advisor/schedule-change.js';
import { evaluate, type ScheduleSpec } from '../../common/schedules.js';
import { isMuonscopeError, type MuonscopeErrorCode } from '../../common/errors.js';
import type { Landscape, Theta } from '../../trainer/diagnostics/index.js';
import { validateLogRecord, type LogRecord, type NewLogRecord, type RecordOf } from '../../common/protocol.js';
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

/** A run of 1000 steps; `schedule` goes in as DynMuon's `optimizer.schedule`, `batchSize` as the config's. */
const runStarted = (optimizer: string, lossFloor: number | null = 0.01, extra: { schedule?: ScheduleSpec; batchSize?: number } = {}) =>
  rec({
    kind: 'run_started',
    step: 0,
    runId: 'r',
    protocol: 1,
    config: { optimizer: { type: optimizer, ...(extra.schedule ? { schedule: extra.schedule } : {}) }, ...(extra.batchSize ? { batchSize: extra.batchSize } : {}) },
    backend: { chosen: 'cpu', skipped: [] },
    kernels: { chosen: 'x', skipped: [] },
    totalSteps: 1000,
    task: { name: 't', lossFloor, lossFloorLabel: '' },
    params: [],
  });

function observe(optimizer: string, records: NewLogRecord[], lossFloor: number | null = 0.01, extra: { schedule?: ScheduleSpec; batchSize?: number } = {}): Observations {
  const o = new Observations();
  o.ingest(runStarted(optimizer, lossFloor, extra));
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
/** The whole model's B_simple as the noise diagnostic logs it (layer null), for a training batch of `batchSize`. */
const wholeNoise = (step: number, bSimple: number, batchSize = 32): NewLogRecord => ({ kind: 'noise', step, layer: null, bSimple, batchSize });

/** A logistic going from ≈ 0.5 to −0.25 around the middle of training. */
const LOGISTIC: ScheduleSpec = { type: 'logistic', pMax: 0.5, pMin: -0.25, tau: 0.5, width: 0.1 };
const HORIZON = 100;
/**
 * A p_model record at `step` under `schedule` (its scheduleP is that schedule's p at the next step and one
 * horizon later, as the advisor runner computes it); the curve's minimum is at `recommendedP` on the 0.125 grid.
 */
function pModel(step: number, recommendedP: number, confidence: number, schedule: ScheduleSpec = LOGISTIC, crossCheckBestP: number | null = recommendedP): NewLogRecord {
  const grid = Array.from({ length: 11 }, (_, i) => -0.5 + 0.125 * i);
  return {
    kind: 'p_model',
    step,
    currentP: evaluate(schedule, step / 1000),
    scheduleP: { start: evaluate(schedule, (step + 1) / 1000), end: evaluate(schedule, (step + 1 + HORIZON) / 1000) },
    horizonSteps: HORIZON,
    layers: [1.8, 2.2, 2.0].map((slope, i) => ({
      layer: `w${i}`, rows: 8, cols: 8, directions: [], curvatureVsSigma: { slope, intercept: 0, r2: 0.9 }, noiseVsCurvature: { slope: 1, intercept: 0, r2: 0.8 }, recommendedP,
    })),
    curve: grid.map((p) => ({ p, loss: 1 + (p - recommendedP) ** 2, residual: 1, noise: (p - recommendedP) ** 2, low: 0.9 + (p - recommendedP) ** 2, high: 1.1 + (p - recommendedP) ** 2 })),
    recommendedP,
    confidence,
    crossCheck: [],
    crossCheckBestP,
    microbatches: 8,
    microbatchSize: 4,
    costMs: 10,
    overheadPct: 1,
  };
}
const scheduleControl = (step: number, schedule: ScheduleSpec): NewLogRecord => ({
  kind: 'control', step, command: 'set_schedule', field: 'schedule', old: null, new: { fromStep: step, schedule }, source: 'test', reason: '',
});

function throwsCode(code: MuonscopeErrorCode, mentions: string, fn: () => unknown): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isMuonscopeError(e, code), `expected ${code}, got ${String(e)}`);
    assert.ok((e as Error).message.includes(mentions), `"${(e as Error).message}" should mention ${mentions}`);
    return true;
  });
}

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
    // Strong evidence (κ ratio 6.5, SNR bound 4) would give 0.8; its race record caps it below auto's 0.5.
    assert.equal(p.confidence, KEEP_P_POSITIVE_CONFIDENCE_CAP);
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

  test('p_model: two fresh, confident records on the same side of the schedule retime it; one is not enough', () => {
    const extra = { schedule: LOGISTIC };
    const at = (records: NewLogRecord[], optimizer = 'dynmuon') => pModelRule(observe(optimizer, [...records, stepRec(200, 1, evaluate(LOGISTIC, 0.2))], 0.01, extra), S);
    // The schedule's mean p over steps 200–300 is ≈ 0.44; 0.125 lies 0.31 below it.
    const p = at([pModel(180, 0.125, 0.7), pModel(200, 0.125, 0.8)])!;
    assert.equal(p.rule, 'p_model');
    assert.equal(p.target, 'p');
    assert.equal(p.change.kind, 'set_schedule');
    const change = p.change as Extract<typeof p.change, { kind: 'set_schedule' }>;
    assert.equal(change.fromStep, 201);
    const next = change.schedule as Extract<ScheduleSpec, { type: 'logistic' }>;
    assert.deepEqual([next.type, next.pMax, next.pMin, next.width], ['logistic', 0.5, -0.25, 0.1], 'retimed: the range and width kept');
    assertBelow(Math.abs(evaluate(next, 201 / 1000) - 0.125), 1e-9, `p at the next step: ${evaluate(next, 0.201)}`);
    assert.match(p.title, /^Retime the p schedule: p 0\.13 now instead of 0\.46 \(τ 0\.50 → 0\.\d\d\): the mode model recommends p = 0\.125 twice$/);
    assert.equal(p.confidence, P_MODEL_CONFIDENCE_CAP, 'min(0.7, 0.8) capped at 0.45 until the evidence bench says otherwise');
    const value = (name: string | RegExp) => p.evidence.filter((e) => (typeof name === 'string' ? e.name === name : name.test(e.name))).map((e) => e.value);
    assert.deepEqual(value('p recommended by the mode model'), [0.125, 0.125]);
    assert.deepEqual(value('mode model bootstrap confidence'), [0.7, 0.8]);
    assert.deepEqual(value(/^expected loss after the horizon at the recommended p/), [1], 'the curve\'s minimum');
    assertAbove(value(/^expected loss after the horizon at the schedule's p/)[0], 1, 'the curve at the schedule\'s p');
    assert.deepEqual(value('cross-check (independent-batch one-step score) best p'), [0.125, 0.125]);
    assert.deepEqual(value('ln h vs ln σ slope (median over layers)'), [2], 'median of 1.8, 2.2, 2.0');

    assert.equal(at([pModel(200, 0.125, 0.8)]), null, 'one record is not enough');
    // (cross-checks abstaining, so that only the sides decide)
    assert.equal(at([pModel(180, 0.125, 0.7, LOGISTIC, null), pModel(200, 0.75, 0.8, LOGISTIC, null)]), null, 'two records on opposite sides of the schedule');
    assert.equal(at([pModel(180, 0.75, 0.7, LOGISTIC, null), pModel(200, 0.125, 0.8, LOGISTIC, null)]), null, 'the same, the other way round');
    assert.equal(at([pModel(180, 0.125, 0.55), pModel(200, 0.125, 0.8)]), null, 'confidence 0.55 < 0.6 on one record');
    assert.equal(at([pModel(180, 0.375, 0.7), pModel(200, 0.375, 0.8)]), null, '0.375 is within one grid step of the schedule\'s 0.44');
    assert.ok(at([pModel(180, 0.25, 0.7), pModel(200, 0.25, 0.8)]), '0.25 is 0.19 below it');
    assert.equal(at([pModel(180, 0.125, 0.7), pModel(200, 0.125, 0.8, LOGISTIC, 0.75)]), null, 'the cross-check prefers the other side');
    assert.ok(at([pModel(180, 0.125, 0.7), pModel(200, 0.125, 0.8, LOGISTIC, null)]), 'a cross-check that abstains does not veto');
    assert.equal(at([pModel(180, 0.125, 0.7), pModel(200, 0.125, 0.8)], 'muon'), null, 'Muon has no p schedule');
    assert.equal(pModelRule(observe('dynmuon', [pModel(80, 0.125, 0.7), pModel(90, 0.125, 0.8), stepRec(200, 1, 0.46)], 0.01, extra), { maxAge: 100 }), null, 'records older than maxAge');
  });

  test('p_model: a schedule change resets the hysteresis; the change is made to the schedule in force', () => {
    const moved: ScheduleSpec = { ...LOGISTIC, tau: 0.6 } as ScheduleSpec;
    const extra = { schedule: LOGISTIC };
    const before = [pModel(180, 0.125, 0.7), scheduleControl(190, moved), pModel(200, 0.125, 0.8, moved)];
    assert.equal(pModelRule(observe('dynmuon', [...before, stepRec(200, 1, evaluate(moved, 0.2))], 0.01, extra), S), null, 'one record since the change');
    const p = pModelRule(observe('dynmuon', [...before, pModel(220, 0.125, 0.8, moved), stepRec(220, 1, evaluate(moved, 0.22))], 0.01, extra), S)!;
    const next = (p.change as { schedule: Extract<ScheduleSpec, { type: 'logistic' }> }).schedule;
    assertBelow(Math.abs(evaluate(next, 221 / 1000) - 0.125), 1e-9, 'retimed to the target at the next step');
    assert.match(p.title, /τ 0\.60 →/, 'from the schedule the command set, not the config\'s');
  });

  test('p_model: p already within a grid step of the target but the schedule about to carry it away: hold', () => {
    // A steep logistic: 0.44 at step 451, −0.20 100 steps later; the model wants 0.375 (mean of the two ≈ 0.12).
    const steep: ScheduleSpec = { type: 'logistic', pMax: 0.5, pMin: -0.25, tau: 0.5, width: 0.02 };
    const p = pModelRule(observe('dynmuon', [pModel(430, 0.375, 0.7, steep), pModel(450, 0.375, 0.9, steep), stepRec(450, 1, evaluate(steep, 0.45))], 0.01, { schedule: steep }), S)!;
    assert.deepEqual((p.change as { schedule: ScheduleSpec }).schedule, { type: 'constant', p: evaluate(steep, 451 / 1000) });
    assert.match(p.title, /^Hold p at 0\.44: the schedule would take it to -0\.20 by the horizon's end, 0\.38 wanted/);
  });

  test('keep p positive / move p negative retime the schedule in force, and yield to a confident mode model', () => {
    const evidenceUp = [dirs(890, 'w1', 10, 1), noise(890, 'w1', 5, 0.5)];
    const late = evaluate(LOGISTIC, 0.9); // ≈ −0.24
    const up = keepPPositiveRule(observe('dynmuon', [...evidenceUp, stepRec(900, 1, late)], 0.01, { schedule: LOGISTIC }), S)!;
    const upNext = (up.change as { schedule: Extract<ScheduleSpec, { type: 'logistic' }> }).schedule;
    assert.equal(upNext.type, 'logistic');
    assertBelow(Math.abs(evaluate(upNext, 901 / 1000) - 0.25), 1e-9, 'p = 0.25 at the next step');
    assert.match(up.title, /Retime the p schedule: p 0\.25 now instead of -0\.24/);
    // A confident mode model that wants p lower than the schedule's outranks the heuristic; one that agrees does not.
    const modelDown = [pModel(880, -0.5, 0.8)];
    assert.equal(keepPPositiveRule(observe('dynmuon', [...evidenceUp, ...modelDown, stepRec(900, 1, late)], 0.01, { schedule: LOGISTIC }), S), null);
    assert.ok(keepPPositiveRule(observe('dynmuon', [...evidenceUp, pModel(880, 0.25, 0.8), stepRec(900, 1, late)], 0.01, { schedule: LOGISTIC }), S));
    assert.ok(keepPPositiveRule(observe('dynmuon', [...evidenceUp, pModel(880, -0.5, 0.5), stepRec(900, 1, late)], 0.01, { schedule: LOGISTIC }), S), 'an unconfident model does not');

    // −0.25 is the logistic's pMin, which it only approaches: the retime aims LOGISTIC_EDGE of the range short of it.
    const down = movePNegativeRule(observe('dynmuon', [dirs(95, 'w1', 1.5, 1), noise(95, 'w1', 0.4, 0.9), stepRec(99, 1, evaluate(LOGISTIC, 0.099))], 0.01, { schedule: LOGISTIC }), S)!;
    const downNext = (down.change as { schedule: ScheduleSpec }).schedule;
    assertBelow(Math.abs(evaluate(downNext, 0.1) - (-0.25 + LOGISTIC_EDGE * 0.75)), 1e-9, 'p at the edge margin above pMin');
    assert.match(down.title, /a logistic only approaches its bounds/);
    assert.equal(movePNegativeRule(observe('dynmuon', [dirs(95, 'w1', 1.5, 1), noise(95, 'w1', 0.4, 0.9), pModel(90, 0.75, 0.9), stepRec(99, 1, 0.49)], 0.01, { schedule: LOGISTIC }), S), null, 'the model wants p higher');
  });

  test('a fresh p_model suggestion outranks the heuristics for p', () => {
    const advisor = new Advisor({ cooldownSteps: 50, maxAge: 100 });
    advisor.ingest(runStarted('dynmuon', 0.01, { schedule: LOGISTIC }));
    // Both fire: move_p_negative (top directions converged) and two records recommending p = 0.125.
    for (const r of [dirs(195, 'w1', 1.5, 1), noise(195, 'w1', 0.4, 0.9), pModel(180, 0.125, 0.7), pModel(200, 0.125, 0.8), stepRec(200, 1, evaluate(LOGISTIC, 0.2))]) advisor.ingest(rec(r));
    assert.ok(movePNegativeRule(advisor.observations, S), 'the heuristic fires on its own');
    const out = advisor.evaluate(200);
    assert.deepEqual(out.map((r) => (r as RecordOf<'suggestion'>).rule), ['p_model']);
    const checked = validateLogRecord({ ...out[0], seq: 1, t: 0 });
    assert.ok(checked.ok, `a valid suggestion record: ${JSON.stringify(checked.ok ? '' : checked.issues)}`);
  });

  test('plateau: step-bound (timid steps, B_simple ≤ batch) raises the lr; noise-bound (B_simple > 2× batch) lowers it; else quiet', () => {
    const evals = (values: number[]) => values.map((v, i) => ({ kind: 'eval', step: 50 * (i + 1) - 1, valLoss: v }) as NewLogRecord);
    const stalled = evals([0.5, 0.499, 0.4985, 0.498]);
    const timid = [curv(180, 0.2), curv(199, 0.1)]; // η_actual/η* = 0.1 and 0.2
    const batch = { batchSize: 32 };
    const run = (records: NewLogRecord[], floor = 0.01, extra: { batchSize?: number } = batch) => observe('muon', [...records, stepRec(199, 0.5)], floor, extra);
    const both = (o: Observations) => [plateauRule(o, S), plateauNoiseRule(o, S)];

    const step = plateauRule(run([...stalled, ...timid, wholeNoise(190, 20)]), S)!;
    assert.equal(step.rule, 'plateau');
    assert.deepEqual(step.change, { kind: 'set_lr', lr: 0.03, reason: 'advisor: plateau with timid steps' });
    assert.deepEqual(step.evidence.map((e) => [e.value, e.threshold, e.comparison, e.step]), [[0.004, 0.005, '<', 199], [0.1, 0.25, '<', 180], [0.2, 0.25, '<', 199], [20, 32, '<', 190]]);
    assert.equal(plateauNoiseRule(run([...stalled, ...timid, wholeNoise(190, 20)]), S), null);

    const noisy = plateauNoiseRule(run([...stalled, wholeNoise(190, 100)]), S)!;
    assert.equal(noisy.rule, 'plateau_noise');
    const { target: _t, ...fields } = noisy;
    assert.ok(validateLogRecord({ kind: 'suggestion', step: 199, id: 's199-plateau_noise', seq: 1, t: 0, ...fields }).ok, 'a valid suggestion record');
    assert.equal(noisy.target, 'lr');
    assert.deepEqual(noisy.change, { kind: 'set_lr', lr: 0.01, reason: 'advisor: plateau at the noise level' });
    assert.match(noisy.title, /B_simple ≈ 100 examples, batch 32\); a batch nearer 100 would help too$/);
    assert.match(noisy.expectedEffect, /raising the batch size toward B_simple ≈ 100 \(now 32\)/);
    assert.deepEqual(noisy.evidence.map((e) => [e.value, e.threshold, e.comparison, e.step]), [[0.004, 0.005, '<', 199], [100, 64, '>', 190]]);
    assert.ok(plateauNoiseRule(run([...stalled, curv(180, 0.05), curv(199, 0.05), wholeNoise(190, 100)]), S), 'whatever the step (η/η* = 0.4 here)');
    assert.equal(plateauRule(run([...stalled, ...timid, wholeNoise(190, 100)]), S), null, 'timid steps, but the plateau is the noise\'s');

    assert.deepEqual(both(run([...stalled, ...timid])), [null, null], 'no noise measurement: the two cannot be told apart');
    assert.deepEqual(both(run([...stalled, ...timid, wholeNoise(190, 50)])), [null, null], 'B_simple 50: above the batch, not above 2×');
    assert.deepEqual(both(run([...stalled, ...timid, wholeNoise(190, 64)])), [null, null], 'B_simple exactly 2× the batch');
    assert.ok(plateauRule(run([...stalled, ...timid, wholeNoise(190, 32)]), S), 'B_simple = the batch size is step-bound');
    assert.deepEqual(both(run([...evals([0.5, 0.49, 0.48, 0.47]), ...timid, wholeNoise(190, 100)])), [null, null], 'still improving (6%)');
    assert.equal(plateauRule(run([...stalled, curv(180, 0.05), curv(199, 0.05), wholeNoise(190, 20)]), S), null, 'η_actual/η* = 0.4: steps are not timid');
    assert.deepEqual(both(run([...evals([0.0102, 0.0102, 0.0102, 0.0102]), ...timid, wholeNoise(190, 100)], 0.01)), [null, null], 'at the floor');
    assert.deepEqual(both(observe('muon', [...stalled, ...timid, wholeNoise(50, 100), stepRec(199, 0.5)], 0.01, batch)), [null, null], 'noise measured more than maxAge steps ago');
    // Without the config's batch size, the noise record's (the training batch it was measured for) is used.
    assert.match(plateauNoiseRule(run([...stalled, wholeNoise(190, 100, 16)], 0.01, {}), S)!.title, /batch 16\)/);
  });
});

describe('schedule changes', () => {
  const change = (spec: ScheduleSpec, q: number, target: number, qEnd = q) => changeSchedule({ spec, q, qEnd, target });

  test('retime: a logistic (or reversed one) passes through the target at q with its range and width kept', () => {
    const cases: [ScheduleSpec, number, number][] = [
      [LOGISTIC, 0.3, 0.21],
      [LOGISTIC, 0.7, 0.3],
      [{ type: 'logistic', pMax: 0.25, pMin: -0.25, tau: 0.04, width: 0.04 }, 0.5, 0.1],
      [{ type: 'logistic', pMax: -0.25, pMin: 0.5, tau: 0.2, width: 0.05 }, 0.6, 0.0],
      [{ type: 'reversed', of: { type: 'logistic', pMax: 0.25, pMin: -0.25, tau: 0.3, width: 0.1 } }, 0.5, 0.1],
    ];
    for (const [spec, q, target] of cases) {
      const c = change(spec, q, target);
      assert.equal(c.kind, 'retime', JSON.stringify(spec));
      assertBelow(Math.abs(evaluate(c.spec, q) - target), 1e-9, `${JSON.stringify(c.spec)} at q = ${q}: ${evaluate(c.spec, q)} vs ${target}`);
      assertBelow(Math.abs(c.pAfter - target), 1e-9, 'pAfter');
      assert.equal(c.pBefore, evaluate(spec, q));
      const leaf = (s: ScheduleSpec) => (s.type === 'reversed' ? s.of : s) as Extract<ScheduleSpec, { type: 'logistic' }>;
      const { tau: _a, ...kept } = leaf(spec);
      const { tau: _b, ...keptAfter } = leaf(c.spec);
      assert.deepEqual(keptAfter, kept, 'pMax, pMin, width kept');
      assert.equal(c.spec.type, spec.type);
    }
    // τ = q − w·ln((pMax − target)/(target − pMin)) = 0.3 − 0.1·ln(0.29/0.46), and the one-line description.
    const c = change(LOGISTIC, 0.3, 0.21);
    assertBelow(Math.abs((c.spec as { tau: number }).tau - (0.3 - 0.1 * Math.log(0.29 / 0.46))), 1e-15, 'τ');
    assert.equal(c.description, 'Retime the p schedule: p 0.21 now instead of 0.41 (τ 0.50 → 0.35)');
  });

  test('retime: linear and cosine keep the value at the end of training when they can; piecewise gets a point', () => {
    const cases: [ScheduleSpec, number, number][] = [
      [{ type: 'linear', from: 0.5, to: -0.25 }, 0.3, 0],
      [{ type: 'cosine', from: 0.5, to: -0.25 }, 0.3, 0],
      [{ type: 'reversed', of: { type: 'linear', from: -0.25, to: 0.5 } }, 0.3, 0],
      [{ type: 'reversed', of: { type: 'cosine', from: -0.25, to: 0.5 } }, 0.6, 0],
    ];
    for (const [spec, q, target] of cases) {
      const c = change(spec, q, target);
      assert.equal(c.kind, 'retime');
      assertBelow(Math.abs(evaluate(c.spec, q) - target), 1e-9, `${JSON.stringify(c.spec)} at q = ${q}`);
      assertBelow(Math.abs(evaluate(c.spec, 1) - evaluate(spec, 1)), 1e-15, `${JSON.stringify(spec)}: the end value kept`);
    }
    // From 1 to −1 at q = 0.9, p −0.8 now, target 0.5: keeping the end needs from = 14 and shifting both ends
    // leaves [−1, 1]; the start is kept instead: to = (0.5 − 1·0.1)/0.9.
    const far = change({ type: 'linear', from: 1, to: -1 }, 0.9, 0.5);
    assert.equal(far.kind, 'retime');
    assertBelow(Math.abs((far.spec as { to: number }).to - 0.4 / 0.9), 1e-12, 'to');
    assert.equal((far.spec as { from: number }).from, 1);
    // Shifted: from 0.2 to 0.9 at q = 0.5, target −0.4: keeping the end needs from −1.7; both ends − 0.95 fit.
    const shifted = change({ type: 'linear', from: 0.2, to: 0.9 }, 0.5, -0.4);
    assertBelow(Math.abs((shifted.spec as { from: number }).from - (0.2 - 0.95)) + Math.abs((shifted.spec as { to: number }).to - (0.9 - 0.95)), 1e-12, 'both ends shifted');

    const pw: ScheduleSpec = { type: 'piecewise', points: [[0, 0.5], [0.5, 0], [0.8, -0.25]] };
    const c = change(pw, 0.3, -0.25);
    assert.deepEqual(c.spec, { type: 'piecewise', points: [[0, 0.5], [0.3, -0.25], [0.5, 0], [0.8, -0.25]] });
    const rc = change({ type: 'reversed', of: pw }, 0.3, 0.25);
    assert.equal(evaluate(rc.spec, 0.3), 0.25);
    assert.equal(evaluate(rc.spec, 0.1), evaluate({ type: 'reversed', of: pw }, 0.1), 'before the point at 1 − 0.5, as it was');
  });

  test('range: a target outside [pMin, pMax] moves that bound, the shape kept', () => {
    const shape = (s: Extract<ScheduleSpec, { type: 'logistic' }>, q: number) => (evaluate(s, q) - s.pMin) / (s.pMax - s.pMin);
    for (const [q, target, key] of [[0.8, -0.5, 'pMin'], [0.2, 0.75, 'pMax']] as const) {
      const c = change(LOGISTIC, q, target);
      assert.equal(c.kind, 'range');
      const next = c.spec as Extract<ScheduleSpec, { type: 'logistic' }>;
      assert.deepEqual(next, { ...LOGISTIC, [key]: target });
      for (const x of [0, 0.25, 0.5, 0.75, 1]) assertBelow(Math.abs(shape(next, x) - shape(LOGISTIC as never, x)), 1e-12, `normalised shape at q = ${x}`);
      assertBelow(Math.abs(c.pAfter - target), Math.abs(c.pBefore - target), 'p now moves toward the target');
    }
    const r = change({ type: 'reversed', of: LOGISTIC as never }, 0.2, -0.5);
    assert.deepEqual(r.spec, { type: 'reversed', of: { ...LOGISTIC, pMin: -0.5 } });
    assert.match(change(LOGISTIC, 0.8, -0.5).description, /^Move the p schedule's pMin -0\.25 → -0\.50: p -0\.\d\d now instead of -0\.\d\d, its shape kept$/);
  });

  test('hold: within one grid step now but carried away over the horizon → the current p, constant; a constant schedule is set', () => {
    // LOGISTIC: 0.41 at q = 0.3, −0.11 at q = 0.6.
    const c = change(LOGISTIC, 0.3, 0.3, 0.6);
    assert.equal(c.kind, 'hold');
    assert.deepEqual(c.spec, { type: 'constant', p: evaluate(LOGISTIC, 0.3) });
    assert.ok(Math.abs(evaluate(LOGISTIC, 0.3) - 0.3) <= P_GRID_STEP && Math.abs(evaluate(LOGISTIC, 0.6) - 0.3) > P_GRID_STEP, 'the premise');
    assert.equal(evaluate(c.spec, 0.3), evaluate(c.spec, 0.6));
    assert.equal(change(LOGISTIC, 0.3, 0.3, 0.35).kind, 'retime', 'the schedule stays within a step over a short horizon');
    const set = change({ type: 'constant', p: 0.2 }, 0.3, -0.1, 0.9);
    assert.deepEqual([set.kind, set.spec, set.description], ['set', { type: 'constant', p: -0.1 }, 'Set p to -0.10 (a constant 0.20 now)']);
  });

  test('bad input: a clear error naming what is wrong, and the spec untouched', () => {
    const spec = structuredClone(LOGISTIC);
    throwsCode('INVALID_ARGUMENT', 'progress q must be within [0, 1]', () => change(spec, 1.5, 0));
    throwsCode('INVALID_ARGUMENT', 'progress q must be within [0, 1]', () => change(spec, NaN, 0));
    throwsCode('INVALID_ARGUMENT', "the horizon's end qEnd", () => change(spec, 0.5, 0, 0.4));
    throwsCode('P_OUT_OF_RANGE', 'target p = 1.5 is outside [-1, 1]', () => change(spec, 0.5, 1.5));
    throwsCode('UNKNOWN_SCHEDULE', 'unknown schedule type "step"', () => change({ type: 'step' } as never, 0.5, 0));
    throwsCode('INVALID_ARGUMENT', 'nothing to change', () => change({ type: 'linear', from: 0, to: 0.5 }, 0.5, 0.25));
    assert.deepEqual(spec, LOGISTIC, 'the input spec is not modified');
  });
});

describe('observations', () => {
  test('the schedule in force (config, then set_schedule commands), batch size, B_simple, p_model and race records', () => {
    const o = observe('dynmuon', [], 0.01, { schedule: LOGISTIC, batchSize: 64 });
    assert.deepEqual(o.schedule, { spec: LOGISTIC, fromStep: 0 });
    assert.equal(o.run!.batchSize, 64);
    const moved: ScheduleSpec = { type: 'constant', p: 0.1 };
    for (const r of [pModel(10, 0.125, 0.7), wholeNoise(12, 80, 64), noise(12, 'w1', 1, 1), scheduleControl(15, moved), pModel(20, 0.125, 0.7), stepRec(20, 1, 0.1)]) o.ingest(rec(r));
    assert.deepEqual(o.schedule, { spec: moved, fromStep: 15 });
    assert.equal(o.lastScheduleChange, 15);
    assert.deepEqual(o.noiseScale, { step: 12, bSimple: 80, batchSize: 64 }, 'the whole model\'s, not a layer\'s');
    assert.deepEqual(o.pModels.map((r) => r.step), [10, 20]);
    assert.deepEqual(o.pModelsSinceScheduleChange(100).map((r) => r.step), [20]);
    for (let i = 0; i < 6; i++) o.ingest(rec(pModel(30 + i, 0.125, 0.7)));
    assert.equal(o.pModels.length, 4, 'the last few kept');
    o.ingest(rec({ kind: 'race', step: 40, suggestionId: 's1', rule: 'p_model', steps: 20, baseline: { trainLoss: 1, valLoss: 1, p: 0.1, lr: 0.02 }, suggested: { trainLoss: 0.9, valLoss: 0.95, p: 0.125, lr: 0.02 }, winner: 'suggested', tieTolerance: 0.01, heldOutExamples: 64, costMs: 5 }));
    assert.deepEqual(o.races.map((r) => r.winner), ['suggested']);
    // A resumed run logs its config again; its checkpoint carries the commanded schedule, which stays.
    o.ingest(rec({ ...(runStarted('dynmuon', 0.01, { schedule: LOGISTIC }) as RecordOf<'run_started'>), resumedFrom: 'ck' }));
    assert.deepEqual(o.schedule, { spec: moved, fromStep: 15 });
    assert.equal(observe('muon', [], 0.01, { schedule: LOGISTIC }).schedule, null, 'only DynMuon has a p schedule');
    assert.equal(observe('dynmuon', [], 0.01, { schedule: { type: 'logistic' } as never }).schedule, null, 'an invalid spec is not used');
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

  test('a schedule change is retimed when proposed again; a dismissed one stays dismissed though its τ moved', () => {
    const start = () => {
      const advisor = new Advisor({ cooldownSteps: 10, maxAge: 100 });
      advisor.ingest(runStarted('dynmuon', 0.01, { schedule: LOGISTIC }));
      for (const r of [pModel(180, 0.125, 0.7), pModel(200, 0.125, 0.8), stepRec(200, 1, evaluate(LOGISTIC, 0.2))]) advisor.ingest(rec(r));
      return advisor;
    };
    const later = (advisor: Advisor, step: number) => {
      for (const r of [pModel(step, 0.125, 0.8), stepRec(step, 1, evaluate(LOGISTIC, step / 1000))]) advisor.ingest(rec(r));
      return log(advisor, advisor.evaluate(step));
    };
    const pending = start();
    const first = log(pending, pending.evaluate(200));
    const refreshed = later(pending, 215);
    assert.deepEqual(refreshed.map((r) => [r.kind, (r as { id: string }).id]), [['suggestion_outcome', 's200-p_model'], ['suggestion', 's215-p_model']], 'pending: refreshed for now');
    const tau = (r: NewLogRecord) => ((r as RecordOf<'suggestion'>).change as { schedule: { tau: number } }).schedule.tau;
    assert.notEqual(tau(refreshed[1]), tau(first[0]), 'a different spec: retimed for step 216');

    const dismissed = start();
    log(dismissed, dismissed.evaluate(200));
    dismissed.ingest(rec({ kind: 'suggestion_outcome', step: 201, id: 's200-p_model', outcome: 'dismissed', source: 'user', reason: 'no' }));
    assert.deepEqual(later(dismissed, 215), [], 'the same advice (p = 0.125 from the next step), dismissed 14 steps ago');
    assert.equal(later(dismissed, 245).length, 1, 'forgotten after four cooldowns');
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

  test('auto mode: suggestions at or above autoMinConfidence are applied by the advisor; p_model ones (capped at 0.45) below it are only shown', SLOW_TEST, async () => {
    const config = mlpConfig({
      steps: 60,
      optimizer: { type: 'dynmuon', lr: 0.02, schedule: { type: 'constant', p: -0.25 } },
      diagnostics: { every: 10, adaptive: false },
      // Between p_model's cap (0.45) and keep_p_positive's (0.47, its race record): the default 0.5 applies neither.
      advisor: { mode: 'auto', probeEvery: 20, cooldownSteps: 20, autoMinConfidence: 0.46 },
      // A batch large enough that the top direction's batch SNR clears 2 at its lower 95% bound (at 32 the
      // point estimates are 3–5 but the intervals reach below 1: the signal is not established).
      batchSize: 128,
    });
    const session = await startSession({ config, configDir: process.cwd(), runsRoot: tmp() });
    await session.done;
    const records = readRunLog(session.paths.log).records;
    // The probe's cadence and budget are mode-probe.test.ts's; here: it logs p_model, no longer p_probe.
    assert.ok(records.some((r) => r.kind === 'p_model') && !records.some((r) => r.kind === 'p_probe'), 'the mode probe ran');
    const suggestions = records.filter((r): r is RecordOf<'suggestion'> => r.kind === 'suggestion');
    // Deterministic on the cpu backend: early on, κ rises with σ and the top directions carry signal, so
    // keep_p_positive fires against p = −0.25 with confidence above this run's auto threshold (step 0: lower bound 3.7).
    const confident = suggestions.filter((x) => x.confidence >= 0.46);
    assertAtLeast(confident.length, 1, `a confident suggestion against p = −0.25: ${suggestions.map((x) => `${x.id} ${x.confidence.toFixed(2)}`)}`);
    for (const s of confident) {
      const outcome = records.find((r): r is RecordOf<'suggestion_outcome'> => r.kind === 'suggestion_outcome' && r.id === s.id);
      assert.deepEqual([outcome?.outcome, outcome?.source], ['applied', 'advisor (auto)'], `${s.id} applied automatically`);
      const control = records.find((r): r is RecordOf<'control'> => r.kind === 'control' && r.seq > s.seq && r.command === s.change.kind);
      assert.equal(control?.source, 'advisor (auto)');
      const nextStep = records.find((r): r is RecordOf<'step'> => r.kind === 'step' && r.seq > control!.seq);
      if (nextStep && s.change.kind === 'set_schedule') assert.equal(nextStep.p, (s.change.schedule as { p: number }).p, 'the suggested p is in force');
    }
    for (const s of suggestions.filter((x) => x.rule === 'p_model')) {
      assert.equal(s.confidence, P_MODEL_CONFIDENCE_CAP);
      assert.ok(!records.some((r) => r.kind === 'suggestion_outcome' && r.id === s.id && r.outcome === 'applied'), `${s.id} not applied automatically`);
    }
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

// The mode probe of a PyTorch run (docs/python.md §3, docs/algorithms.md §10.6): the host asks the Python
// process to measure (`measure`, modeDirections), checks the answer, runs the mode model itself and logs the
// `p_model` record. The recommendation is checked against recommendPJoint called here on the same numbers
// (built by hand, not through the host's code); a malformed answer is an alert and no record; a refusal is
// one alert for the run. The Python side is a fake in Node (test/helpers/fake-measure-child.mjs) or, for the
// host's bookkeeping, nothing at all (ModeRequests on a real run log).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import type { LogRecord, ModeDirection, NewLogRecord, RecordOf } from '../../common/protocol.js';
import { readRunLog, RunLog } from '../../common/run-folder/log.js';
import { gainBoundedDamping } from '../../common/shaping.js';
import { recommendPJoint, type ModeModelInput } from '../../trainer/advisor/mode-model.js';
import { logSpacedRanks } from '../../trainer/advisor/mode-probe.js';
import type { HostMessage } from '../../trainer/host/channel-messages.js';
import { ModeRequests, type ModeRequestSettings } from '../../trainer/host/mode-requests.js';
import { startHost } from '../../trainer/host/session.js';
import { validateRunConfig } from '../../trainer/run/config.js';

const FAKE = join(__dirname, '..', 'helpers', 'fake-measure-child.mjs');
const RANKS = JSON.parse(readFileSync(join(__dirname, '..', 'fixtures', 'log-spaced-ranks.json'), 'utf8')).cases as { rankCount: number; k: number; ranks: number[] }[];
const tmp = () => mkdtempSync(join(tmpdir(), 'muonscope-measure-'));
const ofKind = <K extends LogRecord['kind']>(records: readonly LogRecord[], kind: K) => records.filter((r): r is RecordOf<K> => r.kind === kind);

/** Directions on a power law (h = σ², c ∝ h): what a layer's measurement looks like, at the given ranks. */
function directions(ranks: number[], scale: number): ModeDirection[] {
  return ranks.map((rank) => {
    const sigma = scale * (rank + 1) ** -0.5;
    return { rank, sigma, curvature: sigma * sigma, gradient: 0.05 * sigma * (rank % 2 ? -1 : 1), noiseVariance: 1e-3 * sigma * sigma };
  });
}

function result(step: number, over: Record<string, unknown> = {}) {
  return {
    what: 'modeDirections',
    step,
    layers: [
      { layer: 'a.weight', rows: 16, cols: 32, scale: 1, directions: directions([0, 1, 3, 7, 15], 2) },
      { layer: 'b.weight', rows: 8, cols: 8, scale: 1.5, directions: directions([0, 2, 7], 1) },
    ],
    microbatches: 4,
    microbatchSize: 8,
    batchSize: 32,
    lr: 0.02,
    // Negative enough that the gain bound raises ε (≈ 1e-3^p > 10): the host must apply it as the TS probe does.
    currentP: -0.412345,
    scheduleP: { start: -0.412345, end: -0.3 },
    horizonSteps: 4,
    normalization: 'frobenius',
    damping: 1e-3,
    maxGain: 3,
    costMs: 5,
    // One candidate without positive curvature (scores 0, never chosen); the best by (g_Aᵀd)(g_Bᵀd)/(dᵀHd) is p = 0.
    crossCheck: [
      { p: -0.5, gdA: 3, gdB: 3, dHd: -1 },
      { p: 0, gdA: 2, gdB: 1.5, dHd: 1 },
      { p: 0.1, gdA: 1, gdB: 1, dHd: 1 },
      { p: 0.5, gdA: -1, gdB: 2, dHd: 0.5 },
    ],
    ...over,
  };
}

/** The mode model's input for each layer, by hand from docs/algorithms.md §10.6 (not the host's code). */
function expectedInputs(r: ReturnType<typeof result>): ModeModelInput[] {
  const p = -0.4123; // the p in force to 4 decimals, as the TS probe rounds it
  return r.layers.map((l) => ({
    directions: l.directions,
    rankCount: Math.min(l.rows, l.cols),
    noise: { kind: 'perBatch', batchSize: r.microbatchSize },
    gradientSamples: r.microbatches * r.microbatchSize,
    batchSize: r.batchSize,
    lrs: new Array(r.horizonSteps).fill(r.lr * l.scale),
    currentP: p,
    stepsTaken: r.step + 1,
    normalisation: 'frobenius',
    damping: gainBoundedDamping(p, r.damping, r.maxGain),
  }));
}

function checkRecord(rec: RecordOf<'p_model'>, r: ReturnType<typeof result>) {
  const want = recommendPJoint(expectedInputs(r));
  assert.equal(rec.step, r.step);
  assert.equal(rec.recommendedP, want.p);
  assert.equal(rec.confidence, want.confidence);
  assert.deepEqual(rec.curve, want.curve.map((c) => ({ p: c.p, loss: c.loss, residual: c.residual, noise: c.noise, low: c.low, high: c.high })));
  assert.deepEqual(rec.layers.map((l) => [l.layer, l.rows, l.cols, l.recommendedP]), r.layers.map((l, i) => [l.layer, l.rows, l.cols, want.layers[i].p]));
  assert.deepEqual(rec.layers.map((l) => l.directions), r.layers.map((l) => l.directions));
  assert.deepEqual(rec.layers.map((l) => l.curvatureVsSigma), want.layers.map((l) => l.curvatureVsSigma));
  assert.equal(rec.currentP, -0.4123);
  assert.ok(gainBoundedDamping(-0.4123, r.damping, r.maxGain) > 10 * r.damping, 'the gain bound is in play (ε raised ×25)');
  assert.deepEqual(rec.scheduleP, r.scheduleP);
  assert.equal(rec.horizonSteps, r.horizonSteps);
  assert.equal(rec.microbatches, 4);
  assert.equal(rec.microbatchSize, 8);
  assert.deepEqual(rec.crossCheck, [
    { p: -0.5, score: 0, gdA: 3, gdB: 3, dHd: -1 },
    { p: 0, score: 3, gdA: 2, gdB: 1.5, dHd: 1 },
    { p: 0.1, score: 1, gdA: 1, gdB: 1, dHd: 1 },
    { p: 0.5, score: -4, gdA: -1, gdB: 2, dHd: 0.5 },
  ]);
  assert.equal(rec.crossCheckBestP, 0);
  assert.equal(rec.costMs, 5);
}

/** ModeRequests on a real run log (its validation is the protocol's), with the messages it sends kept. */
function harness(settings: Partial<ModeRequestSettings> = {}, connected = true) {
  const dir = tmp();
  const log = new RunLog(join(dir, 'log.ndjson'));
  const sent: HostMessage[] = [];
  let step = 0;
  const modes = new ModeRequests({
    send: (m) => (connected ? (sent.push(m), true) : false),
    append: (r: NewLogRecord) => log.append(r),
    step: () => step,
    settings: { mode: 'suggest', probeEvery: 4, probeDirections: 12, probeMicrobatches: 4, ...settings },
  });
  log.subscribe((r) => modes.observe(r));
  const append = (r: NewLogRecord) => log.append(r);
  append({ kind: 'run_started', step: 0, runId: 'r', protocol: 1, config: {}, backend: { chosen: 'x', skipped: [] }, kernels: { chosen: 'x', skipped: [] }, totalSteps: 100, task: { name: 't', lossFloor: null, lossFloorLabel: '' }, params: [{ name: 'a.weight', shape: [16, 32], route: 'matrix' }, { name: 'a.bias', shape: [16], route: 'non-matrix' }, { name: 'b.weight', shape: [8, 8], route: 'matrix' }, { name: 'c.weight', shape: [8, 8], route: 'matrix' }] } as NewLogRecord);
  /** Python's step record and the host's turn after it. */
  const stepDone = (s: number, p: number | null = 0.1) => {
    append({ kind: 'step', step: s, loss: 1, lr: 0.02, p, stepMs: 10 });
    step = s + 1;
    modes.afterStep(s);
  };
  const records = () => log.readAfter(0, 10_000);
  return { modes, sent, stepDone, records, append, close: () => log.close() };
}

describe('the host asks Python to measure for the mode model', () => {
  test('log-spaced ranks: the TS rule gives the table the Python port is checked against', () => {
    for (const c of RANKS) assert.deepEqual(logSpacedRanks(c.rankCount, c.k), c.ranks, `${c.rankCount}, ${c.k}`);
  });

  test('every probeEvery steps with a p, one at a time, the layers in turns under the curvature cap', () => {
    const h = harness({ probeDirections: 12, probeMaxHvps: 24 });
    for (let s = 0; s < 4; s++) h.stepDone(s);
    assert.equal(h.sent.length, 1);
    assert.deepEqual(h.sent[0], { type: 'measure', id: 'host-measure-1', what: 'modeDirections', params: { k: 12, microbatches: 4, horizonSteps: 4, crossCheck: [-0.5, -0.25, 0, 0.1, 0.25, 0.5], layers: ['a.weight', 'b.weight'] } });
    // Unanswered: the next due probe is a period later; an answer that never came does not block it.
    for (let s = 4; s < 8; s++) h.stepDone(s);
    assert.equal(h.sent.length, 2);
    assert.deepEqual((h.sent[1] as Extract<HostMessage, { what: 'modeDirections' }>).params.layers, ['c.weight', 'a.weight']);
    assert.deepEqual(h.modes.measured('host-measure-1', result(3)), { known: false }, 'a stale id is unknown');
    h.close();
  });

  test('with the adaptive budget a due probe waits until its last cost fits what is left after the diagnostics and earlier probes', () => {
    const asked = (budget: { adaptive: boolean; budgetPct: number }, diagnosticsPct: number) => {
      const h = harness({ budget });
      const at: number[] = [];
      for (let s = 0; s < 24; s++) {
        const before = h.sent.length;
        h.stepDone(s); // 10 ms a step
        if (h.sent.length > before) {
          at.push(s + 1);
          const id = (h.sent.at(-1) as Extract<HostMessage, { type: 'measure' }>).id;
          assert.deepEqual(h.modes.measured(id, result(s)), { known: true }); // 5 ms each
        }
        if (s === 4) h.append({ kind: 'diagnostics_cost', step: s, costsMs: {}, overheadPct: diagnosticsPct, every: 100 });
      }
      h.close();
      return at;
    };
    // Probes so far plus the next (5 ms each) within 10% of the steps' time (10 ms each): 100·10/80 > 10 at
    // step 8, 100·10/120 at 12, 100·15/160 at 16, 100·20/200 at 20, then 100·25/240 > 10 at 24.
    assert.deepEqual(asked({ adaptive: true, budgetPct: 10 }, 0), [4, 12, 16, 20]);
    // With the diagnostics at 5%: 5 + 100·10/train ≤ 10 needs train ≥ 200 ms; then 5 + 100·15/240 > 10 at 24.
    assert.deepEqual(asked({ adaptive: true, budgetPct: 10 }, 5), [4, 20]);
    assert.deepEqual(asked({ adaptive: false, budgetPct: 10 }, 5), [4, 8, 12, 16, 20, 24]);
  });

  test('nothing is asked without a p, with the advisor off, or at probeEvery 0', () => {
    for (const [settings, p] of [[{}, null], [{ mode: 'off' as const }, 0.1], [{ probeEvery: 0 }, 0.1]] as const) {
      const h = harness(settings);
      for (let s = 0; s < 8; s++) h.stepDone(s, p);
      assert.equal(h.sent.length, 0, JSON.stringify(settings));
      h.close();
    }
  });

  test('a measured answer → a valid p_model record whose recommendation is recommendPJoint on the same numbers', () => {
    const h = harness();
    for (let s = 0; s < 4; s++) h.stepDone(s);
    const r = result(3);
    assert.deepEqual(h.modes.measured('host-measure-1', r), { known: true });
    const [rec] = ofKind(h.records(), 'p_model');
    assert.ok(rec, 'a p_model record');
    checkRecord(rec, r);
    assert.equal(rec.overheadPct, (100 * 5) / 40, 'the probes\' cost over the steps\' time so far');
    assert.deepEqual(ofKind(h.records(), 'alert'), []);
    h.close();
  });

  test('a layer measured at the previous probe is reused; an older one is not', () => {
    const h = harness();
    for (let s = 0; s < 4; s++) h.stepDone(s);
    h.modes.measured('host-measure-1', result(3));
    for (let s = 4; s < 8; s++) h.stepDone(s);
    const { crossCheck: _, ...only } = result(7);
    only.layers = [only.layers[0]];
    h.modes.measured('host-measure-2', only);
    const second = ofKind(h.records(), 'p_model')[1];
    assert.deepEqual(second.layers.map((l) => l.layer), ['a.weight', 'b.weight']);
    assert.deepEqual([second.crossCheck, second.crossCheckBestP], [[], null], 'no products sent: no cross-check');
    for (let s = 8; s < 16; s++) h.stepDone(s);
    const later = result(15);
    later.layers = [later.layers[0]];
    h.modes.measured('host-measure-4', later);
    assert.deepEqual(ofKind(h.records(), 'p_model')[2].layers.map((l) => l.layer), ['a.weight'], 'b.weight is two periods old');
    h.close();
  });

  test('a malformed answer is an alert naming the field and no record; so is a rank outside the spectrum', () => {
    const h = harness();
    const bad: [Record<string, unknown>, string][] = [
      [{ ...result(3), microbatches: 1 }, '/result/microbatches'],
      [{ ...result(3), layers: [{ layer: 'a.weight', rows: 16, cols: 32, scale: 1, directions: [{ rank: 0, sigma: 1, curvature: 1, gradient: 0 }] }] }, '/result/layers/0/directions/0/noiseVariance'],
      [{ ...result(3), normalization: 'l2' }, '/result/normalization'],
      [{ ...result(3), layers: [{ layer: 'b.weight', rows: 8, cols: 8, scale: 1, directions: directions([0, 2, 8], 1) }] }, '/result/layers/0/directions/2/rank'],
    ];
    bad.forEach(([r, path], i) => {
      for (let s = 4 * i; s < 4 * i + 4; s++) h.stepDone(s);
      const outcome = h.modes.measured(`host-measure-${i + 1}`, r);
      assert.ok(outcome.known && outcome.issue, path);
      assert.equal(outcome.issue.path, path);
      const alerts = ofKind(h.records(), 'alert');
      assert.equal(alerts.length, i + 1);
      assert.equal(alerts[i].code, 'BAD_MEASUREMENT');
      assert.ok(alerts[i].message.includes(path), alerts[i].message);
    });
    assert.deepEqual(ofKind(h.records(), 'p_model'), []);
    h.close();
  });

  test('directions the model cannot fit: PROBE_NO_MODES, no record', () => {
    const h = harness();
    for (let s = 0; s < 4; s++) h.stepDone(s);
    const r = result(3);
    for (const l of r.layers) l.directions = l.directions.map((d) => ({ ...d, curvature: -1 }));
    h.modes.measured('host-measure-1', r);
    assert.deepEqual(ofKind(h.records(), 'alert').map((a) => a.code), ['PROBE_NO_MODES']);
    assert.deepEqual(ofKind(h.records(), 'p_model'), []);
    h.close();
  });

  test('a refusal is one alert for the run, however often; an unknown id is not taken', () => {
    const h = harness();
    for (let s = 0; s < 12; s++) {
      h.stepDone(s);
      if ((s + 1) % 4 === 0) assert.equal(h.modes.refused(`host-measure-${(s + 1) / 4}`, 'NOT_ALLOWED_NOW', 'no probe'), true);
    }
    assert.equal(h.modes.refused('host-measure-9', 'NOT_ALLOWED_NOW', 'x'), false);
    const alerts = ofKind(h.records(), 'alert');
    assert.deepEqual(alerts.map((a) => [a.code, a.level]), [['MEASURE_REFUSED', 'warning']]);
    assert.match(alerts[0].message, /NOT_ALLOWED_NOW: no probe/);
    assert.deepEqual(ofKind(h.records(), 'p_model'), []);
    h.close();
  });

  test('muonscope run with a fake child: measure sent after step 3, the answer logged as p_model; a malformed one as an alert', async () => {
    const r = result(3);
    const run = async (env: Record<string, string>) => {
      const conf = validateRunConfig({ name: 'py', steps: 100, advisor: { mode: 'suggest', probeEvery: 4, probeDirections: 5, probeMicrobatches: 4 } });
      assert.ok(conf.ok);
      const out = new PassThrough();
      let text = '';
      out.on('data', (d) => (text += d));
      const session = await startHost({ config: conf.config, runsRoot: tmp(), command: process.execPath, args: [FAKE], stdout: out, stderr: new PassThrough(), onLine: () => undefined, env: { ...process.env, ...env } });
      session.launch();
      const done = await session.done;
      assert.equal(done.state, 'finished');
      return { records: readRunLog(session.paths.log).records, text };
    };
    const good = await run({ FAKE_RESULT: JSON.stringify(r) });
    assert.match(good.text, /measure host-measure-1 modeDirections \{"k":5,"microbatches":4,"horizonSteps":4,"crossCheck":\[-0.5,-0.25,0,0.1,0.25,0.5\],"layers":\["a.weight","b.weight"\]\}/);
    const [rec] = ofKind(good.records, 'p_model');
    assert.ok(rec, 'a p_model record in log.ndjson');
    checkRecord(rec, r);
    assert.deepEqual(ofKind(good.records, 'alert'), []);

    const bad = await run({ FAKE_RESULT: JSON.stringify({ ...r, lr: -1 }) });
    assert.match(bad.text, /host error BAD_MESSAGE \/result\/lr/);
    assert.deepEqual(ofKind(bad.records, 'p_model'), []);
    assert.deepEqual(ofKind(bad.records, 'alert').map((a) => a.code), ['BAD_MEASUREMENT']);

    const refused = await run({ FAKE_ANSWER: 'refused' });
    assert.deepEqual(ofKind(refused.records, 'p_model'), []);
    assert.deepEqual(ofKind(refused.records, 'alert').map((a) => a.code), ['MEASURE_REFUSED']);
  });
});

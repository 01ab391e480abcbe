// Fork-and-race (trainer/run/race.ts, docs/algorithms.md §7.1) on a tiny real run. The references are the
// run itself: the baseline branch must be the run's own next steps, the suggested branch the run with the
// suggestion applied, and the run after a race must go on exactly as if there had been none; all compared
// with exact equality (Object.is), since every branch does the very same float32 operations.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { RACE_MAX_STEPS, validateLogRecord, type LogRecord, type RecordOf, type SuggestedChange } from '../../common/protocol.js';
import { readRunLog, RunLog } from '../../common/run-folder/log.js';
import { isMuonscopeError } from '../../common/errors.js';
import { encodeState } from '../../trainer/optim/state.js';
import type { HybridOptimizer } from '../../trainer/optim/hybrid.js';
import { raceBranches, raceHeldOutIndex, raceWinner, RACE_HELD_OUT_BATCHES, RACE_TIE_TOLERANCE, type RaceResult, branchWinner, raceRecord } from '../../trainer/run/race.js';
import { Trainer } from '../../trainer/run/trainer.js';
import type { Workload } from '../../trainer/run/workload.js';
import { tinyMlpConfig, tinyRunParts } from '../helpers/tiny-run.js';
import { SLOW_TEST, waitUntil } from '../helpers/wait.js';

const TOTAL = 200;
/** The step every run is paused at before the race, and the race's length. */
const AT = 6;
const K = 5;
/** Steps the runs go on after the race, compared one by one. */
const AFTER = 8;

const SCHEDULE: SuggestedChange = { kind: 'set_schedule', schedule: { type: 'constant', p: 0.5 }, fromStep: 0, reason: 'r' };
const LR: SuggestedChange = { kind: 'set_lr', lr: 0.035 };

const ofKind = <K extends LogRecord['kind']>(records: LogRecord[], kind: K) => records.filter((r): r is RecordOf<K> => r.kind === kind);

interface Run {
  trainer: Trainer;
  log: RunLog;
  workload: Workload;
  optimizer: HybridOptimizer;
  running: Promise<unknown>;
  observerCalls: { n: number };
}

/** Runs a failed test left open: stopped and disposed, so the next test can build its model's variables. */
const open = new Set<Run>();
afterEach(async () => {
  for (const run of open) await finish(run).catch(() => undefined);
});

/** A paused run at step AT with suggestions `sx` (the schedule change) and `sy` (the lr change) pending. */
async function pausedRun(): Promise<Run> {
  const config = tinyMlpConfig({ name: 'race', steps: TOTAL, checkpointEvery: 1000 });
  const { workload, optimizer } = await tinyRunParts(config);
  const dir = mkdtempSync(join(tmpdir(), 'muonscope-race-'));
  const log = new RunLog(join(dir, 'log.ndjson'));
  const settings = { runId: 'race', totalSteps: TOTAL, evalEvery: 1000, checkpointEvery: 1000, checkpointDir: join(dir, 'ck'), diagnosticsEvery: 1000, diagnosticsAdaptive: true, diagnosticsBudgetPct: 10 };
  const trainer = new Trainer(settings, workload, optimizer, log, 0);
  // Diagnostics would see a branch's steps through the observers: this one counts every call.
  const observerCalls = { n: 0 };
  trainer.observers.push({ beforeUpdate: async () => void observerCalls.n++, afterUpdate: async () => void observerCalls.n++ });
  const paused = trainer.enqueue({ kind: 'pause' }, { source: 'test' });
  const running = trainer.run();
  await paused;
  await stepAndPause({ trainer } as Run, AT);
  log.append({ kind: 'suggestion', step: AT, id: 'sx', rule: 'p_model', title: 'Set p to 0.5', change: SCHEDULE, evidence: [], confidence: 0.6, expectedEffect: 'e' });
  log.append({ kind: 'suggestion', step: AT, id: 'sy', rule: 'plateau', title: 'Raise lr', change: LR, evidence: [], confidence: 0.35, expectedEffect: 'e' });
  const run = { trainer, log, workload, optimizer, running, observerCalls };
  open.add(run);
  return run;
}

async function stepAndPause(run: Pick<Run, 'trainer'>, n: number): Promise<void> {
  const target = run.trainer.step + n;
  await run.trainer.enqueue({ kind: 'step', n }, { source: 'test' });
  await waitUntil(`the pause at step ${target}`, () => run.trainer.currentState === 'paused' && run.trainer.step === target);
}

async function finish(run: Run): Promise<LogRecord[]> {
  open.delete(run);
  try {
    run.trainer.requestStop('test over');
    await run.running;
  } finally {
    run.log.close();
    run.workload.dispose();
  }
  return readRunLog(run.log.path).records;
}

/** Everything a step can change, as bytes: each weight's float32 values and the optimizer's encoded state. */
function stateBytes(run: Pick<Run, 'workload' | 'optimizer'>): Buffer {
  const parts = run.workload.variables.map((v) => Buffer.from((v.dataSync() as Float32Array).slice().buffer));
  return Buffer.concat([...parts, Buffer.from(encodeState(run.optimizer.getState()))]);
}

async function heldOutLoss(workload: Workload): Promise<number> {
  const batch = workload.heldOutBatch(raceHeldOutIndex(RACE_HELD_OUT_BATCHES), RACE_HELD_OUT_BATCHES);
  const t = tf.tidy(() => workload.loss(batch));
  const v = (await t.data())[0];
  t.dispose();
  batch.dispose();
  return v;
}

const losses = (records: LogRecord[], from: number, to: number) => ofKind(records, 'step').filter((s) => s.step >= from && s.step < to).map((s) => s.loss);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

function assertSame(actual: number[], expected: number[], what: string): void {
  assert.equal(actual.length, expected.length, `${what}: lengths`);
  actual.forEach((a, i) => assert.ok(Object.is(a, expected[i]), `${what}: index ${i}: ${a} ≠ ${expected[i]}`));
}

describe('fork-and-race', () => {
  test('the branches are the run\'s own futures, and after a race the run goes on bit for bit as without it', SLOW_TEST, async () => {
    // Reference runs: B goes on untouched, C applies the schedule suggestion at step AT, D the lr one.
    const b = await pausedRun();
    const bHeldBefore = await heldOutLoss(b.workload);
    await stepAndPause(b, K);
    const bHeld = await heldOutLoss(b.workload);
    await stepAndPause(b, AFTER);
    const bRecords = await finish(b);
    const refs: Record<string, { records: LogRecord[]; held: number }> = {};
    for (const id of ['sx', 'sy']) {
      const run = await pausedRun();
      await run.trainer.enqueue({ kind: 'apply_suggestion', id }, { source: 'test' });
      await stepAndPause(run, K);
      const held = await heldOutLoss(run.workload);
      refs[id] = { records: await finish(run), held };
    }

    // A: the same run, raced twice (in-process and through the command), then stepped on.
    const a = await pausedRun();
    assert.ok(Object.is(await heldOutLoss(a.workload), bHeldBefore), 'A and B are the same run at step AT');
    const before = stateBytes(a);
    const tensorsBefore = tf.memory().numTensors;
    const direct: Record<string, RaceResult> = {};
    for (const [id, change] of [['sx', SCHEDULE], ['sy', LR]] as const) {
      direct[id] = await raceBranches(a.workload, a.optimizer, change, K, AT, { totalSteps: TOTAL });
      assert.ok(stateBytes(a).equals(before), `after the in-process race of ${id}: weights and optimizer state byte for byte as before`);
    }
    assert.equal(tf.memory().numTensors, tensorsBefore, 'no tensor leaked');

    const seqBefore = a.log.lastSeq();
    const ack = await a.trainer.enqueue({ kind: 'race', id: 'sx', steps: K }, { source: 'dashboard', id: 'c9' });
    assert.ok(stateBytes(a).equals(before), 'after the race command: the state byte for byte as before');
    assert.equal(a.trainer.step, AT, 'the run did not move');
    assert.equal(a.trainer.currentState, 'paused', 'and is still paused');
    assert.equal(a.observerCalls.n, 2 * AT, 'no diagnostics saw the branches (the observer ran only for the run\'s own steps)');
    const afterRace = readRunLog(a.log.path).records.filter((r) => r.seq > seqBefore);
    assert.deepEqual(afterRace.map((r) => r.kind), ['race'], 'one race record, nothing else');
    assert.equal(a.trainer.suggestions.get('sx')?.id, 'sx', 'the suggestion is still pending');

    await stepAndPause(a, K + AFTER);
    const aRecords = await finish(a);

    // (a) The run after the races is the run without them, every step, bit for bit.
    assertSame(losses(aRecords, 0, AT + K + AFTER), losses(bRecords, 0, AT + K + AFTER), 'A against B, steps 0 … AT+K+AFTER');
    assert.equal(losses(bRecords, 0, Infinity).length, AT + K + AFTER);

    // (b) The baseline branch is the run's next K steps on the same batches, and the same held-out score.
    const bNext = losses(bRecords, AT, AT + K);
    const bLast = ofKind(bRecords, 'step').find((s) => s.step === AT + K - 1)!;
    for (const id of ['sx', 'sy']) {
      assertSame(direct[id].baseline.losses, bNext, `${id}: baseline branch against B's steps`);
      assert.ok(Object.is(direct[id].baseline.score.trainLoss, mean(bNext)));
      assert.deepEqual([direct[id].baseline.score.p, direct[id].baseline.score.lr], [bLast.p, bLast.lr], `${id}: baseline p and lr are the run's at its last step`);
    }
    assert.ok(Object.is(direct.sx.baseline.score.valLoss, bHeld), 'baseline held-out loss is the run\'s after K steps');

    // (c) The suggested branch is the run with the suggestion applied at step AT.
    for (const id of ['sx', 'sy']) {
      const ref = refs[id];
      const next = losses(ref.records, AT, AT + K);
      const last = ofKind(ref.records, 'step').find((s) => s.step === AT + K - 1)!;
      assertSame(direct[id].suggested.losses, next, `${id}: suggested branch against the run that applied it`);
      assert.ok(Object.is(direct[id].suggested.score.valLoss, ref.held), `${id}: suggested held-out loss`);
      assert.deepEqual([direct[id].suggested.score.p, direct[id].suggested.score.lr], [last.p, last.lr], `${id}: p and lr at the branch's last step`);
      assert.notDeepEqual(next, bNext, `${id}: the change did change the trajectory (else this comparison proves nothing)`);
    }
    assert.equal(direct.sx.suggested.score.p, 0.5);
    assert.equal(direct.sy.suggested.score.lr, 0.035);

    // (e) The record: valid under the protocol, the same numbers as the in-process race, the winner by the rule.
    const record = ofKind(aRecords, 'race')[0];
    const checked = validateLogRecord(JSON.parse(JSON.stringify(record)));
    assert.ok(checked.ok, JSON.stringify(!checked.ok && checked.issues));
    assert.deepEqual(
      [record.step, record.suggestionId, record.rule, record.steps, record.tieTolerance, record.heldOutExamples],
      [AT, 'sx', 'p_model', K, RACE_TIE_TOLERANCE, RACE_HELD_OUT_BATCHES * 32],
    );
    assert.deepEqual([record.baseline, record.suggested], [direct.sx.baseline.score, direct.sx.suggested.score], 'the command\'s race equals the in-process one');
    assert.equal(record.winner, raceWinner(bHeld, refs.sx.held, RACE_TIE_TOLERANCE));
    assert.ok(record.costMs > 0);
    const f = (x: number) => x.toPrecision(6);
    assert.equal(ack.step, AT);
    assert.match(ack.detail!, new RegExp(`^race sx over ${K} step\\(s\\): .*held-out loss baseline ${f(bHeld)}, suggested ${f(refs.sx.held)} \\(128 examples\\)$`));
    assert.ok(ack.detail!.includes(record.winner === 'tie' ? 'tie' : `${record.winner} wins`), ack.detail);
  });

  test('refused races (running, unknown or used suggestion, too many steps, past the end, no schedule) change nothing and log nothing', SLOW_TEST, async () => {
    const run = await pausedRun();
    const before = stateBytes(run);
    const seq = run.log.lastSeq();
    const refusal = async (command: Parameters<Trainer['enqueue']>[0], code: string, message: RegExp) => {
      const e = await run.trainer.enqueue(command, { source: 'test' }).then(() => assert.fail(`${JSON.stringify(command)} was accepted`), (err: unknown) => err);
      assert.ok(isMuonscopeError(e), String(e));
      assert.equal(e.code, code, e.message);
      assert.match(e.message, message);
      assert.ok(stateBytes(run).equals(before), `${JSON.stringify(command)}: state unchanged`);
      assert.equal(run.log.lastSeq(), seq, `${JSON.stringify(command)}: nothing logged`);
    };
    await refusal({ kind: 'race', id: 'nope', steps: K }, 'INVALID_ARGUMENT', /no suggestion "nope"/);
    await refusal({ kind: 'race', id: 'sx', steps: RACE_MAX_STEPS + 1 }, 'INVALID_ARGUMENT', /race steps must be an integer in \[1, 1000\]/);
    await refusal({ kind: 'race', id: 'sx', steps: 0 }, 'INVALID_ARGUMENT', /race steps must be an integer/);
    await refusal({ kind: 'race', id: 'sx', steps: TOTAL - AT + 1 }, 'INVALID_ARGUMENT', /runs past the end of the run \(194 left\)/);
    // A schedule already replaced from a later step: the suggestion's "from now" could not be applied, nor raced.
    await run.trainer.enqueue({ kind: 'set_schedule', schedule: { type: 'constant', p: 0.1 }, fromStep: 50 }, { source: 'test' });
    const ahead = stateBytes(run);
    assert.ok(!ahead.equals(before), 'the set_schedule did change the timeline (so the snapshot covers it)');
    const seq2 = run.log.lastSeq();
    const e = await run.trainer.enqueue({ kind: 'race', id: 'sx', steps: K }, { source: 'test' }).catch((err: unknown) => err);
    assert.ok(isMuonscopeError(e, 'INVALID_ARGUMENT') && /already replaced from step 50/.test(e.message), String(e));
    assert.equal(run.log.lastSeq(), seq2, 'nothing logged');
    assert.ok(stateBytes(run).equals(ahead), 'state unchanged');

    // A used suggestion, and a race while running.
    await run.trainer.enqueue({ kind: 'dismiss_suggestion', id: 'sy' }, { source: 'test' });
    const seq3 = run.log.lastSeq();
    const used = await run.trainer.enqueue({ kind: 'race', id: 'sy', steps: K }, { source: 'test' }).catch((err: unknown) => err);
    assert.ok(isMuonscopeError(used, 'INVALID_STATE') && /already dismissed/.test(used.message), String(used));
    assert.equal(run.log.lastSeq(), seq3);
    await run.trainer.enqueue({ kind: 'resume' }, { source: 'test' });
    const whileRunning = await run.trainer.enqueue({ kind: 'race', id: 'sx', steps: K }, { source: 'test' }).catch((err: unknown) => err);
    assert.ok(isMuonscopeError(whileRunning, 'INVALID_STATE') && /while paused; the run is running/.test(whileRunning.message), String(whileRunning));
    const records = await finish(run);
    assert.equal(ofKind(records, 'race').length, 0, 'no race was logged');
    assert.ok(!ofKind(records, 'control').some((c) => c.command === 'race'), 'nor audited as a control');
  });

  test('on a Muon run (no p schedule) a schedule suggestion cannot be raced; the in-process race checks its arguments', SLOW_TEST, async () => {
    const config = tinyMlpConfig({ name: 'race-muon', steps: TOTAL, optimizer: { type: 'muon', lr: 0.02 } });
    const { workload, optimizer } = await tinyRunParts(config);
    try {
      const before = stateBytes({ workload, optimizer });
      await assert.rejects(raceBranches(workload, optimizer, SCHEDULE, K, 0), (e: unknown) => isMuonscopeError(e, 'INVALID_STATE') && /no p schedule/.test(e.message));
      await assert.rejects(raceBranches(workload, optimizer, LR, K, -1), (e: unknown) => isMuonscopeError(e, 'INVALID_ARGUMENT') && /start must be a non-negative integer/.test(e.message));
      await assert.rejects(raceBranches(workload, optimizer, LR, K, 0, { heldOutBatches: 0 }), /heldOutBatches must be a positive integer/);
      await assert.rejects(raceBranches(workload, optimizer, LR, K, 0, { tieTolerance: -1 }), /tieTolerance must be a finite number/);
      assert.ok(stateBytes({ workload, optimizer }).equals(before), 'refusals changed nothing');
      // The lr race on Muon works and restores: p is null for a run without a schedule.
      const r = await raceBranches(workload, optimizer, LR, 2, 0);
      assert.deepEqual([r.baseline.score.p, r.suggested.score.p, r.suggested.score.lr, r.baseline.score.lr], [null, null, 0.035, 0.02]);
      assert.ok(stateBytes({ workload, optimizer }).equals(before), 'the race restored the state');
      // A suggested branch that diverges at step 1: it stops there and loses; the state is put back (and no tensor is left behind).
      let current = -1;
      let branch = 0;
      const diverging: Workload = {
        ...workload,
        batch: (i) => ((branch += i === 0 ? 1 : 0), (current = i), workload.batch(i)),
        loss: (b) => (branch === 2 && current === 1 ? tf.mul(workload.loss(b), NaN) : workload.loss(b)),
      };
      const tensors = tf.memory().numTensors;
      const d = await raceBranches(diverging, optimizer, LR, 3, 0);
      assert.deepEqual([d.suggested.score.trainLoss, d.suggested.score.valLoss, d.suggested.score.divergedAtStep, d.suggested.losses.length], [null, null, 1, 1]);
      assert.ok(Number.isFinite(d.baseline.score.valLoss) && d.baseline.score.divergedAtStep === undefined);
      assert.equal(d.winner, 'baseline');
      assert.ok(validateLogRecord({ seq: 1, t: 0, ...raceRecord(d, { id: 's1', rule: 'plateau' }) }).ok, 'a diverged race is a valid record');
      assert.ok(stateBytes({ workload, optimizer }).equals(before), 'a diverged race restored the state');
      assert.equal(tf.memory().numTensors, tensors, 'no tensor leaked');
    } finally {
      workload.dispose();
    }
  });

  test('the winner when a branch diverged: the one that did not; of two, the one that lasted longer; the same step is a tie', () => {
    const ok = (valLoss: number) => ({ trainLoss: valLoss, valLoss, p: null, lr: 0.02 });
    const diverged = (step: number) => ({ trainLoss: null, valLoss: null, divergedAtStep: step, p: null, lr: 0.02 });
    assert.equal(branchWinner(ok(1), diverged(3), 1e-3), 'baseline');
    assert.equal(branchWinner(diverged(3), ok(9), 1e-3), 'suggested');
    assert.equal(branchWinner(diverged(3), diverged(5), 1e-3), 'suggested');
    assert.equal(branchWinner(diverged(5), diverged(3), 1e-3), 'baseline');
    assert.equal(branchWinner(diverged(4), diverged(4), 1e-3), 'tie');
    assert.equal(branchWinner(ok(1), ok(0.5), 1e-3), 'suggested');
  });

  test('the winner: lower held-out loss, a tie within the relative tolerance', () => {
    assert.equal(raceWinner(2, 1.9, 1e-3), 'suggested');
    assert.equal(raceWinner(1.9, 2, 1e-3), 'baseline');
    // |a − b| / max(|a|, |b|) (values exact in binary): 0.25/1 is on the boundary (a tie), just over it is not.
    assert.equal(raceWinner(1, 0.75, 0.25), 'tie');
    assert.equal(raceWinner(0.75, 1, 0.25), 'tie');
    assert.equal(raceWinner(1, 0.75 - 2 ** -20, 0.25), 'suggested');
    assert.equal(raceWinner(-1, -0.75 + 2 ** -20, 0.25), 'baseline', 'relative to the larger magnitude, signs as they come');
    assert.equal(raceWinner(0, 0, 1e-3), 'tie');
    assert.equal(raceWinner(1, 1, 0), 'tie');
    assert.equal(raceWinner(1, 1 - 2 ** -52, 0), 'suggested', 'with no tolerance any difference decides');
  });
});

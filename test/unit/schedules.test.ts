// p schedules against the values test/fixtures/generate_optim.py computed in Python, and the timeline.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Value } from '@sinclair/typebox/value';
import { isMuonscopeError, type MuonscopeErrorCode } from '../../common/errors.js';
import { schedules } from '../../trainer/optim/index.js';
import { evaluate, ScheduleSpecSchema, validateSchedule, type ScheduleSpec } from '../../common/schedules.js';
import { DYNMUON_REPO_LOGISTIC, ScheduleTimeline, TRACK3_LOGISTIC } from '../../trainer/optim/schedules.js';
import { assertAtMost, assertBelow } from '../helpers/bounds.js';
import { loadIndex } from '../helpers/fixtures.js';

const index = loadIndex<{ schedules: { spec: ScheduleSpec; values: [number, number][] }[] }>('optim');

function throwsCode(code: MuonscopeErrorCode, mentions: string, fn: () => unknown): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isMuonscopeError(e, code), `expected ${code}, got ${String(e)}`);
    assert.ok((e as Error).message.includes(mentions), `"${(e as Error).message}" should mention ${mentions}`);
    return true;
  });
}

test('the library entry point exports the shared specs and the trainer\'s timeline as one `schedules` namespace', () => {
  assert.equal(schedules.evaluate, evaluate);
  assert.equal(schedules.validateSchedule, validateSchedule);
  assert.equal(schedules.ScheduleTimeline, ScheduleTimeline);
  assert.equal(schedules.TRACK3_LOGISTIC, TRACK3_LOGISTIC);
});

test('every schedule type matches the Python values at known points (≤ 1e-12)', () => {
  for (const { spec, values } of index.schedules) {
    validateSchedule(spec);
    for (const [q, p] of values) assertAtMost(Math.abs(evaluate(spec, q) - p), 1e-12, `${JSON.stringify(spec)} at q = ${q}`);
  }
});

test('Track-3 logistic starts at p ≈ 0.116, the repository defaults at ≈ 0.664 (≤ 1e-12)', () => {
  const expected = (pMax: number) => -0.25 + (pMax + 0.25) / (1 + Math.exp(-1));
  assertAtMost(Math.abs(evaluate(TRACK3_LOGISTIC, 0) - expected(0.25)), 1e-12, `Track-3 logistic at 0: ${evaluate(TRACK3_LOGISTIC, 0)} vs ${expected(0.25)}, abs.`);
  assertBelow(Math.abs(evaluate(TRACK3_LOGISTIC, 0) - 0.116), 1e-3, `Track-3 logistic at 0: ${evaluate(TRACK3_LOGISTIC, 0)} vs 0.116, abs.`);
  assertAtMost(Math.abs(evaluate(DYNMUON_REPO_LOGISTIC, 0) - expected(1)), 1e-12, `repository logistic at 0: ${evaluate(DYNMUON_REPO_LOGISTIC, 0)} vs ${expected(1)}, abs.`);
  assertBelow(Math.abs(evaluate(DYNMUON_REPO_LOGISTIC, 0) - 0.664), 1e-3, `repository logistic at 0: ${evaluate(DYNMUON_REPO_LOGISTIC, 0)} vs 0.664, abs.`);
});

test('reversed runs a schedule backwards, piecewise holds each point, progress is clamped to [0, 1]', () => {
  const lin: ScheduleSpec = { type: 'linear', from: 0.5, to: -0.5 };
  for (const q of [0, 0.3, 1]) assert.equal(evaluate({ type: 'reversed', of: lin }, q), evaluate(lin, 1 - q));
  const pw: ScheduleSpec = { type: 'piecewise', points: [[0.2, 0.3], [0.7, -0.1]] };
  assert.equal(evaluate(pw, 0), 0.3);
  assert.equal(evaluate(pw, 0.69), 0.3);
  assert.equal(evaluate(pw, 0.7), -0.1);
  assert.equal(evaluate(lin, 2), -0.5);
  assert.equal(evaluate(lin, -1), 0.5);
});

test('invalid specs: unknown type, p outside [−1, 1], bad numbers', () => {
  throwsCode('UNKNOWN_SCHEDULE', 'exponential', () => validateSchedule({ type: 'exponential' }));
  throwsCode('UNKNOWN_SCHEDULE', 'step', () => validateSchedule({ type: 'reversed', of: { type: 'step' } }));
  throwsCode('P_OUT_OF_RANGE', '1.5', () => validateSchedule({ type: 'constant', p: 1.5 }));
  throwsCode('P_OUT_OF_RANGE', '-1.1', () => validateSchedule({ type: 'linear', from: 0, to: -1.1 }));
  throwsCode('P_OUT_OF_RANGE', '2', () => validateSchedule({ type: 'cosine', from: 2, to: 0 }));
  throwsCode('P_OUT_OF_RANGE', '-3', () => validateSchedule({ type: 'piecewise', points: [[0, 0], [0.5, -3]] }));
  throwsCode('P_OUT_OF_RANGE', 'q = 0', () => validateSchedule({ type: 'logistic', pMax: 1.5, pMin: 0, tau: 0.5, width: 0.01 }));
  throwsCode('P_OUT_OF_RANGE', '1.2', () => validateSchedule({ type: 'reversed', of: { type: 'constant', p: 1.2 } }));
  throwsCode('INVALID_HYPERPARAMETER', 'width', () => validateSchedule({ type: 'logistic', pMax: 0.2, pMin: 0, tau: 0.1, width: 0 }));
  throwsCode('INVALID_HYPERPARAMETER', 'p', () => validateSchedule({ type: 'constant', p: Number.NaN }));
  throwsCode('INVALID_HYPERPARAMETER', 'increase', () => validateSchedule({ type: 'piecewise', points: [[0.5, 0], [0.5, 0.1]] }));
  throwsCode('INVALID_HYPERPARAMETER', 'points', () => validateSchedule({ type: 'piecewise', points: [] }));
});

test('the structure comes from the one schema: extra fields, malformed points and a reversed reversal are refused by both', () => {
  const refused: [unknown, MuonscopeErrorCode, string][] = [
    [{ type: 'constant', p: 0.1, extra: 1 }, 'INVALID_HYPERPARAMETER', 'schedule.extra'],
    [{ type: 'piecewise', points: [[0.5]] }, 'INVALID_HYPERPARAMETER', 'schedule.points[0]'],
    [{ type: 'linear', from: '0.1', to: 0 }, 'INVALID_HYPERPARAMETER', 'schedule.from'],
    [{ type: 'reversed', of: { type: 'constant', p: 0, extra: 1 } }, 'INVALID_HYPERPARAMETER', 'schedule.of.extra'],
    [{ type: 'reversed', of: { type: 'reversed', of: { type: 'constant', p: 0 } } }, 'UNKNOWN_SCHEDULE', 'schedule.of'],
    [{ type: 'reversed', of: { type: 'constant', p: 0 }, extra: 1 }, 'INVALID_HYPERPARAMETER', 'schedule.extra'],
  ];
  for (const [spec, code, mentions] of refused) {
    throwsCode(code, mentions, () => validateSchedule(spec));
    assert.equal(Value.Check(ScheduleSpecSchema, spec), false, `the schema should refuse ${JSON.stringify(spec)}`);
  }
  for (const { spec } of index.schedules) assert.ok(Value.Check(ScheduleSpecSchema, spec), `the schema should accept ${JSON.stringify(spec)}`);
});

test('a timeline replaces the schedule from a step on, keeps its history and round-trips through JSON', () => {
  const tl = new ScheduleTimeline(TRACK3_LOGISTIC);
  tl.replaceFrom(40, { type: 'constant', p: -0.1 }, { source: 'webview', reason: 'user edit' });
  tl.replaceFrom(70, { type: 'reversed', of: { type: 'linear', from: 0.2, to: -0.2 } }, { source: 'advisor', reason: 'noise rose' });
  assert.equal(tl.pAt(0, 100), evaluate(TRACK3_LOGISTIC, 0));
  assert.equal(tl.pAt(39, 100), evaluate(TRACK3_LOGISTIC, 0.39));
  assert.equal(tl.pAt(40, 100), -0.1);
  assert.equal(tl.pAt(80, 100), evaluate({ type: 'reversed', of: { type: 'linear', from: 0.2, to: -0.2 } }, 0.8));
  assert.deepEqual(
    tl.history().map((e) => [e.fromStep, e.source, e.reason]),
    [
      [0, 'config', 'initial schedule'],
      [40, 'webview', 'user edit'],
      [70, 'advisor', 'noise rose'],
    ],
  );
  const json = JSON.parse(JSON.stringify(tl.toJSON()));
  const back = ScheduleTimeline.fromJSON(json);
  assert.deepEqual(back.toJSON(), tl.toJSON());
  for (let s = 0; s <= 100; s++) assert.equal(back.pAt(s, 100), tl.pAt(s, 100));
});

test('a timeline refuses bad replacements and corrupt JSON without changing', () => {
  const tl = new ScheduleTimeline({ type: 'constant', p: 0 });
  tl.replaceFrom(10, { type: 'constant', p: 0.1 });
  const before = JSON.stringify(tl.toJSON());
  throwsCode('INVALID_ARGUMENT', '5', () => tl.replaceFrom(5, { type: 'constant', p: 0.2 }));
  throwsCode('INVALID_ARGUMENT', '-1', () => tl.replaceFrom(-1, { type: 'constant', p: 0.2 }));
  throwsCode('P_OUT_OF_RANGE', '-4', () => tl.replaceFrom(20, { type: 'constant', p: -4 }));
  assert.equal(JSON.stringify(tl.toJSON()), before);
  throwsCode('INVALID_STATE', 'version', () => ScheduleTimeline.fromJSON({ version: 2, entries: [] }));
  throwsCode('INVALID_STATE', 'step 0', () => ScheduleTimeline.fromJSON({ version: 1, entries: [{ fromStep: 3, spec: { type: 'constant', p: 0 }, source: 'x', reason: '' }] }));
  throwsCode('INVALID_STATE', '9', () => ScheduleTimeline.fromJSON({ version: 1, entries: [{ fromStep: 0, spec: { type: 'constant', p: 9 }, source: 'x', reason: '' }] }));
});

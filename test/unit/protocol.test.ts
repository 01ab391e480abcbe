// The protocol module: every message kind validates, bad ones are refused with the offending field's
// path, and frame parsing never throws.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { validateFromDashboard } from '../../common/dashboard-messages.js';
import {
  MAX_CLIENT_FRAME_BYTES,
  parseClientMessage,
  validateCommand,
  validateLogRecord,
  validateServerMessage,
  type Command,
} from '../../common/protocol.js';

const commands: Command[] = [
  { kind: 'pause' },
  { kind: 'resume', reason: 'ok' },
  { kind: 'stop' },
  { kind: 'step', n: 5 },
  { kind: 'set_lr', lr: 0.01 },
  { kind: 'set_schedule', schedule: { type: 'reversed', of: { type: 'logistic', pMax: 0.25, pMin: -0.25, tau: 0.04, width: 0.04 } }, fromStep: 10 },
  { kind: 'set_schedule', schedule: { type: 'piecewise', points: [[0, 0.5], [0.5, -0.1]] } },
  { kind: 'set_diagnostics', every: 10, adaptive: true, budgetPct: 5 },
  { kind: 'checkpoint' },
];

test('every command kind validates, and round-trips through a client frame', () => {
  for (const command of commands) {
    assert.ok(validateCommand(command).ok, JSON.stringify(command));
    const parsed = parseClientMessage(JSON.stringify({ type: 'command', id: 'x', command }));
    assert.ok(parsed.ok && parsed.message.type === 'command', JSON.stringify(command));
  }
});

test('a bad command names the field, keeps the command id, and is INVALID_COMMAND', () => {
  const cases: [unknown, string][] = [
    [{ kind: 'set_lr', lr: 0 }, '/command/lr'],
    [{ kind: 'set_lr', lr: 'fast' }, '/command/lr'],
    [{ kind: 'step', n: 1.5 }, '/command/n'],
    [{ kind: 'set_schedule', schedule: { type: 'constant', p: 'x' } }, '/command/schedule/p'],
    [{ kind: 'set_schedule', schedule: { type: 'constant', p: 0.1, extra: 1 } }, '/command/schedule/extra'],
    [{ kind: 'pause', extra: true }, '/command/extra'],
    [{ kind: 'fly' }, '/command/kind'],
  ];
  for (const [command, path] of cases) {
    const r = parseClientMessage(JSON.stringify({ type: 'command', id: 'abc', command }));
    assert.ok(!r.ok, JSON.stringify(command));
    assert.deepEqual([r.error.code, r.error.id, r.error.path], ['INVALID_COMMAND', 'abc', path], JSON.stringify(command));
  }
});

test('frames that are not messages get BAD_FRAME or BAD_MESSAGE, never an exception', () => {
  assert.equal((parseClientMessage('{') as { error: { code: string } }).error.code, 'BAD_FRAME');
  assert.equal((parseClientMessage('x'.repeat(MAX_CLIENT_FRAME_BYTES + 1)) as { error: { code: string } }).error.code, 'BAD_FRAME');
  for (const frame of ['null', '[]', '42', '"hi"', '{"type":"subscribe"}', '{"type":"subscribe","afterSeq":-1}', '{"type":"nope"}']) {
    const r = parseClientMessage(frame);
    assert.ok(!r.ok && r.error.code === 'BAD_MESSAGE', frame);
  }
  assert.ok(parseClientMessage('{"type":"subscribe","afterSeq":0}').ok, 'a valid subscribe');
});

test('log records: valid ones pass, non-finite numbers and unknown kinds do not', () => {
  const step = { seq: 1, t: 1, kind: 'step', step: 0, loss: 1.5, lr: 0.02, p: null, stepMs: 3 };
  assert.ok(validateLogRecord(step).ok, 'a step record');
  assert.ok(!validateLogRecord({ ...step, loss: NaN }).ok, 'NaN loss');
  assert.ok(!validateLogRecord({ ...step, loss: Infinity }).ok, 'infinite loss');
  assert.ok(!validateLogRecord({ ...step, seq: 0 }).ok, 'seq starts at 1');
  assert.ok(!validateLogRecord({ ...step, kind: 'mystery' }).ok, 'unknown kind');
  assert.ok(validateLogRecord({ seq: 2, t: 1, kind: 'noise', step: 3, layer: null, bSimple: null, batchSize: 16 }).ok, 'a noise record before the estimate exists');
});

test('server messages and dashboard messages validate', () => {
  assert.ok(validateServerMessage({ type: 'hello', protocol: 1, runId: 'r', runDir: '/x', lastSeq: 0 }).ok, 'hello');
  assert.ok(validateServerMessage({ type: 'ack', id: 'a', kind: 'pause', step: 3 }).ok, 'ack');
  assert.ok(!validateServerMessage({ type: 'error', code: 'WHATEVER', message: 'm' }).ok, 'unknown error code');
  assert.ok(validateFromDashboard({ type: 'command', runId: 'r', id: 'c1', command: { kind: 'pause' } }).ok, 'dashboard command');
  assert.ok(!validateFromDashboard({ type: 'command', runId: 'r', id: 'c1', command: { kind: 'set_lr', lr: -1 } }).ok, 'bad dashboard command');
  assert.ok(!validateFromDashboard({ type: 'ready', extra: 1 }).ok, 'extra fields');
});

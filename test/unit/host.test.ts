// The host of a PyTorch run (docs/python.md): run folder, log, WebSocket server and advisor in Node, the
// training in a child that talks over the channel. The child here is a fake written in Node
// (test/helpers/fake-python-child.mjs), so no Python is needed: records reach the log and clients only
// through the log's validation, commands go to the child and its answers come back as the protocol's, and
// a child that dies leaves a crashed run with its last lines and an intact log.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PassThrough } from 'node:stream';
import { after, describe, test } from 'node:test';
import type { LogRecord, NewLogRecord, RecordOf } from '../../common/protocol.js';
import { readRunLog } from '../../common/run-folder/log.js';
import { SuggestionBook } from '../../trainer/advisor/advisor.js';
import { LineSplitter, startChannel, type Peer } from '../../trainer/host/channel.js';
import type { HostMessage } from '../../trainer/host/channel-messages.js';
import { LineTail, SupervisedChild } from '../../trainer/host/child.js';
import { CommandBridge } from '../../trainer/host/command-bridge.js';
import { startHost, type HostSession } from '../../trainer/host/session.js';
import { validateRunConfig } from '../../trainer/run/config.js';
import { MemoryRecordSource } from '../../trainer/server/record-source.js';
import { protocolCodeFor } from '../../trainer/server/commands.js';
import { waitUntil, within } from '../helpers/wait.js';
import { TestClient } from '../helpers/ws-client.js';

const ROOT = join(__dirname, '..', '..');
const FAKE = join(__dirname, '..', 'helpers', 'fake-python-child.mjs');
const tmp = () => mkdtempSync(join(tmpdir(), 'muonscope-host-'));
const ofKind = <K extends LogRecord['kind']>(records: LogRecord[], kind: K) => records.filter((r): r is RecordOf<K> => r.kind === kind);

function config(advisor = 'off') {
  const r = validateRunConfig({ name: 'py', steps: 100, advisor: { mode: advisor } });
  assert.ok(r.ok);
  return r.config;
}

/** Collects a stream's text, for what the child printed. */
function sink() {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (d) => (text += d));
  return { stream, text: () => text };
}

const hosts: HostSession[] = [];
const clients: TestClient[] = [];
after(async () => {
  for (const c of clients) c.close();
  for (const h of hosts) {
    if (h.childPid() !== undefined) h.signal('SIGKILL');
    await h.done.catch(() => undefined);
  }
});

async function host(env: Record<string, string>, advisor = 'off') {
  const out = sink();
  const err = sink();
  const lines: string[] = [];
  const session = await startHost({ config: config(advisor), runsRoot: tmp(), command: process.execPath, args: [FAKE], stdout: out.stream, stderr: err.stream, onLine: (l) => lines.push(l), env: { ...process.env, ...env } });
  hosts.push(session);
  session.launch();
  // The fake ends its opening with an ack nobody asked for; the host's answer proves all before it was handled.
  const synced = () => waitUntil('the fake child to be answered for its sync line', () => out.text(), { until: (t) => t.includes('host error UNKNOWN_COMMAND') });
  return { session, out, err, lines, synced };
}

async function client(session: HostSession) {
  const c = await TestClient.connect(session.url, session.token);
  clients.push(c);
  return c;
}

describe('muonscope run: the host', () => {
  test('records from the child are stamped into log.ndjson and replayed to a WebSocket client; set_lr and pause are acked at the step the child reports', async () => {
    const { session, out, synced } = await host({ FAKE_STEPS: '3' });
    await synced();
    assert.match(out.text(), /env run dir exists, config exists/);
    assert.match(out.text(), new RegExp(`welcome ${session.runId} steps 100`));

    const logged = readRunLog(session.paths.log);
    assert.deepEqual(logged.skipped, []);
    assert.deepEqual(logged.records.map((r) => [r.seq, r.kind, r.step]), [[1, 'run_started', 0], [2, 'step', 0], [3, 'step', 1], [4, 'step', 2]]);
    const started = ofKind(logged.records, 'run_started')[0];
    // The host's fields: its run id, the protocol version and, in the script's own config, the advisor
    // settings the host applies; none of the host's TF.js defaults (model, task, batch size).
    const script = { name: 'fake-script', steps: 100, optimizer: { type: 'dynmuon', lr: 0.02, mode: 'exact', normalization: 'frobenius', schedule: { type: 'constant', p: 0.1 } } };
    assert.deepEqual([started.runId, started.protocol, started.config], [session.runId, 1, { ...script, advisor: config().advisor }]);

    const c = await client(session);
    assert.deepEqual(c.records, logged.records, 'the replay is the log, record for record');

    const lr = await c.command({ kind: 'set_lr', lr: 0.01 }, 'test');
    assert.deepEqual(lr, { type: 'ack', id: 'c1', kind: 'set_lr', step: 3, detail: 'lr 0.01' });
    const paused = await c.command({ kind: 'pause' }, 'test');
    assert.deepEqual(paused, { type: 'ack', id: 'c2', kind: 'pause', step: 3 });
    const state = (await c.waitFor('the paused state, live', (r) => r.kind === 'state')) as RecordOf<'state'>;
    assert.deepEqual([state.step, state.state], [3, 'paused']);
    const controls = ofKind(c.records, 'control').map((r) => [r.command, r.new, r.commandId, r.source, r.step]);
    assert.deepEqual(controls, [['set_lr', 0.01, 'c1', 'test', 3], ['pause', 'paused', 'c2', 'test', 3]]);
    // The child's own refusal comes back with its code and message.
    assert.deepEqual(await c.command({ kind: 'pause' }), { type: 'error', id: 'c3', code: 'NOT_ALLOWED_NOW', message: 'cannot pause: the run is paused' });

    assert.equal(existsSync(session.paths.trainer), true);
    assert.deepEqual(await c.command({ kind: 'stop' }), { type: 'ack', id: 'c4', kind: 'stop', step: 3 });
    const result = await within('the host to end after the child stopped', session.done);
    assert.deepEqual([result.state, result.crashed, result.exit.code], ['stopped', false, 0]);
    assert.equal(existsSync(session.paths.trainer), false, 'trainer.json goes with the host');
    assert.deepEqual(readRunLog(session.paths.log).records.at(-1)!.kind, 'state');
  });

  test('an invalid record is not written: the child gets BAD_RECORD with the JSON path, the log an alert', async () => {
    const bad = [
      { kind: 'step', step: 3, loss: 'oops', lr: 0.02, p: null, stepMs: 1 },
      { kind: 'suggestion', step: 3, id: 's3-x', rule: 'plateau', title: 't', change: { kind: 'set_lr', lr: 0.1 }, evidence: [], confidence: 1, expectedEffect: '' },
      { kind: 'no_such_kind', step: 3 },
    ];
    const { session, out, synced } = await host({ FAKE_STEPS: '3', FAKE_EXTRA: JSON.stringify(bad) });
    await synced();
    const errors = out.text().split('\n').filter((l) => l.startsWith('fake: host error BAD_RECORD'));
    assert.deepEqual(errors, ['fake: host error BAD_RECORD /record/loss', 'fake: host error BAD_RECORD /record/kind', 'fake: host error BAD_RECORD /record/kind']);
    const logged = readRunLog(session.paths.log);
    assert.deepEqual(logged.skipped, []);
    assert.deepEqual(logged.records.map((r) => r.kind), ['run_started', 'step', 'step', 'step', 'alert', 'alert', 'alert']);
    const alerts = ofKind(logged.records, 'alert');
    assert.deepEqual(alerts.map((a) => [a.code, a.level, a.step]), [['BAD_RECORD', 'warning', 3], ['BAD_RECORD', 'warning', 3], ['BAD_RECORD', 'warning', 3]]);
    assert.match(alerts[0].message, /a step record from the Python process was refused \(not logged\): \/loss: Expected number/);
    assert.match(alerts[1].message, /suggestion records are the host's/);
    assert.match(alerts[2].message, /unknown record kind "no_such_kind"/);
  });

  test('the advisor reads the log: its suggestion, applied by a client, goes to the child as the concrete set_lr and is logged applied at the acked step', async () => {
    // A noise-bound plateau: four flat evaluations and B_simple far above the batch (32), then a step to evaluate after.
    const extra = [0, 1, 2, 3].map((step) => ({ kind: 'eval', step, valLoss: 2 }));
    extra.push({ kind: 'noise', step: 3, layer: null, bSimple: 1000, batchSize: 32 } as never, { kind: 'step', step: 3, loss: 2, lr: 0.02, p: 0.1, stepMs: 1 } as never);
    const { session, out, synced } = await host({ FAKE_STEPS: '3', FAKE_EXTRA: JSON.stringify(extra) }, 'suggest');
    await synced();
    const suggestion = ofKind(readRunLog(session.paths.log).records, 'suggestion');
    assert.deepEqual(suggestion.map((s) => [s.id, s.rule, s.step, s.change]), [['s3-plateau_noise', 'plateau_noise', 3, { kind: 'set_lr', lr: 0.01, reason: 'advisor: plateau at the noise level' }]]);
    const c = await client(session);
    const reply = await c.command({ kind: 'apply_suggestion', id: 's3-plateau_noise' }, 'test');
    assert.deepEqual(reply, { type: 'ack', id: 'c1', kind: 'apply_suggestion', step: 4, detail: 'applied s3-plateau_noise; lr 0.01' });
    const forwarded = out.text().split('\n').find((l) => l.startsWith('fake: command c1 '));
    assert.equal(forwarded, `fake: command c1 ${JSON.stringify({ kind: 'set_lr', lr: 0.01, reason: `suggestion s3-plateau_noise: ${suggestion[0].title}`.slice(0, 500) })} from test`);
    const outcome = (await c.waitFor('the outcome', (r) => r.kind === 'suggestion_outcome')) as RecordOf<'suggestion_outcome'>;
    assert.deepEqual([outcome.id, outcome.outcome, outcome.step, outcome.source], ['s3-plateau_noise', 'applied', 4, 'test']);
    const control = ofKind(c.records, 'control');
    assert.deepEqual(control.map((r) => [r.command, r.new, r.commandId]), [['set_lr', 0.01, 'c1']]);
    assert.ok(control[0].seq < outcome.seq, 'the change is logged before its outcome, as the TS trainer logs them');
  });

  test('a command while no Python process is connected is refused NOT_ALLOWED_NOW; SIGTERM is forwarded and the run ends stopped', async () => {
    const { session, out } = await host({ FAKE_MODE: 'idle' });
    await waitUntil('the idle child to start', () => out.text().includes('fake: idle'));
    const c = await client(session);
    const reply = await c.command({ kind: 'pause' });
    assert.equal(reply.type === 'error' && reply.code, 'NOT_ALLOWED_NOW');
    assert.match((reply as { message: string }).message, /no Python process is connected to this run yet/);
    session.signal('SIGTERM');
    const result = await within('the host to end after SIGTERM', session.done);
    assert.deepEqual([result.state, result.crashed, result.exit.signal], ['stopped', false, 'SIGTERM']);
    const last = readRunLog(session.paths.log).records.at(-1) as RecordOf<'state'>;
    assert.match(last.reason, /^stopped by SIGTERM \(forwarded to the command, which then was killed by SIGTERM\)$/);
  });

  test('a child killed by SIGKILL leaves the run crashed, with its last lines, and the log intact', async () => {
    const { session, err, synced } = await host({ FAKE_MODE: 'hang', FAKE_STEPS: '5', FAKE_LINES: '60' });
    await synced();
    await waitUntil('the traceback on stderr', () => err.text().includes('traceback line 60'));
    const c = await client(session);
    process.kill(session.childPid()!, 'SIGKILL');
    const result = await within('the host to end after the child died', session.done);
    assert.deepEqual([result.state, result.crashed, result.exit.signal], ['crashed', true, 'SIGKILL']);

    const logged = readRunLog(session.paths.log);
    assert.deepEqual(logged.skipped, []);
    assert.deepEqual(ofKind(logged.records, 'step').map((s) => s.step), [0, 1, 2, 3, 4]);
    const [alert, state] = logged.records.slice(-2) as [RecordOf<'alert'>, RecordOf<'state'>];
    assert.deepEqual([alert.kind, alert.code, alert.level, state.kind, state.state, state.step], ['alert', 'CRASH', 'error', 'state', 'crashed', 5]);
    assert.match(alert.message, /^the command was killed by SIGKILL; its last lines:\n/);
    // The last 50 lines of stdout and stderr together: of the sixty traceback lines, at least the first ten are gone.
    const tail = alert.message.split('\n').slice(1);
    assert.equal(tail.length, 50);
    assert.ok(tail.some((l) => l.startsWith('traceback line 60 ')));
    const numbers = tail.map((l) => /^traceback line (\d+) /.exec(l)?.[1]).filter((n) => n !== undefined).map(Number);
    assert.ok(Math.min(...numbers) >= 11, `kept traceback lines from ${Math.min(...numbers)}`);
    assert.ok(state.reason.length <= 1000, `reason of ${state.reason.length} chars`);
    // Lines of ~33 characters: the reason holds the end of the tail, cut at its start.
    assert.match(state.reason, /^the command was killed by SIGKILL; its last lines:\n…/);
    assert.ok(alert.message.endsWith(state.reason.split('…')[1]), 'the reason is the end of the alert');
    await c.waitFor('the crash, live', (r) => r.kind === 'state' && r.state === 'crashed');
  });
});

describe('the channel', () => {
  function line(socket: Socket): Promise<unknown> {
    return new Promise((resolve) => createInterface({ input: socket }).once('line', (l) => resolve(JSON.parse(l))));
  }
  const closed = (socket: Socket) => new Promise<void>((resolve) => socket.once('close', () => resolve()));

  test('only a first-line hello with the token gets in; one process at a time', async () => {
    const hellos: Peer[] = [];
    const channel = await startChannel({ token: 'right-token', onHello: (p) => (hellos.push(p), { type: 'welcome', runId: 'r', runDir: '/d', config: {} }), onMessage: () => undefined, onClose: () => undefined, log: () => undefined });
    try {
      const open = async (first: string) => {
        const s = connect(channel.port, '127.0.0.1');
        const reply = line(s);
        s.write(first + '\n');
        return { s, reply: await reply };
      };
      const wrong = await open(JSON.stringify({ type: 'hello', token: 'wrong-token', protocol: 1, pid: 1 }));
      assert.deepEqual(wrong.reply, { type: 'error', code: 'BAD_TOKEN', message: 'wrong token (MUONSCOPE_CHANNEL_TOKEN)' });
      await within('the refused connection to close', closed(wrong.s));
      const record = await open(JSON.stringify({ type: 'record', record: { kind: 'step' } }));
      assert.equal((record.reply as { code: string }).code, 'BAD_HELLO');
      await within('the connection without a hello to close', closed(record.s));
      const garbage = await open('not json');
      assert.equal((garbage.reply as { code: string }).code, 'BAD_HELLO');
      assert.equal(hellos.length, 0, 'no refused connection reached the session');

      const good = await open(JSON.stringify({ type: 'hello', token: 'right-token', protocol: 1, pid: 7, rank: 0, worldSize: 1 }));
      assert.deepEqual(good.reply, { type: 'welcome', runId: 'r', runDir: '/d', config: {} });
      assert.equal(channel.peer()?.hello.pid, 7);
      const second = await open(JSON.stringify({ type: 'hello', token: 'right-token', protocol: 1, pid: 8 }));
      assert.deepEqual(second.reply, { type: 'error', code: 'BUSY', message: 'another process (pid 7) is connected to this run' });
      const unknown = line(good.s);
      good.s.write(JSON.stringify({ type: 'shout' }) + '\n');
      assert.equal(((await unknown) as { code: string; path: string }).path, '/type');
      good.s.destroy();
    } finally {
      await channel.close();
    }
  });

  test('lines are split across chunks and limited in bytes', () => {
    const s = new LineSplitter(8);
    assert.deepEqual(s.push(Buffer.from('ab')), []);
    assert.deepEqual(s.push(Buffer.from('c\nde\n\nf')), ['abc', 'de', '']);
    assert.deepEqual(s.push(Buffer.from('gh\n')), ['fgh']);
    assert.deepEqual(s.push(Buffer.from('12345678\n')), ['12345678']);
    assert.throws(() => s.push(Buffer.from('123456789')), /more than 8 bytes/);
    assert.throws(() => new LineSplitter(8).push(Buffer.from('123456789\n')), /more than 8 bytes/);
  });

  test('the output tail keeps the last lines of both streams, partial lines included', () => {
    const t = new LineTail(3);
    t.push('out', 'a\nb');
    t.push('err', 'x\n');
    t.push('out', 'c\nd\n');
    t.push('err', 'tail without newline');
    t.flush();
    assert.deepEqual(t.get(), ['bc', 'd', 'tail without newline']);
  });
});

describe('commands for a Python run', () => {
  const suggestion = (id: string, change: RecordOf<'suggestion'>['change']): NewLogRecord => ({ kind: 'suggestion', step: 4, id, rule: 'plateau', title: `title of ${id}`, change, evidence: [], confidence: 0.6, expectedEffect: 'faster' });

  function bridge(connected = true) {
    const log = new MemoryRecordSource();
    const book = new SuggestionBook();
    const sent: HostMessage[] = [];
    const b = new CommandBridge({ send: (m) => (connected ? (sent.push(m), true) : false), append: (r) => log.append(r), suggestions: book });
    log.subscribe((r) => {
      book.ingest(r);
      b.observe(r);
    });
    log.append({ kind: 'step', step: 9, loss: 1, lr: 0.02, p: 0.1, stepMs: 1 });
    log.append(suggestion('s4-lr', { kind: 'set_lr', lr: 0.03 }));
    log.append(suggestion('s4-p', { kind: 'set_schedule', schedule: { type: 'constant', p: 0.2 }, fromStep: 5 }));
    log.append(suggestion('s4-later', { kind: 'set_schedule', schedule: { type: 'constant', p: -0.1 }, fromStep: 50 }));
    return { b, log, sent, book };
  }

  test('apply_suggestion forwards the concrete change and logs the outcome when Python acks', async () => {
    const { b, log, sent } = bridge();
    const applied = b.handle({ id: 'c1', command: { kind: 'apply_suggestion', id: 's4-lr' }, source: 'vscode' });
    await waitUntil('the change to be sent', () => sent.length === 1);
    assert.deepEqual(sent[0], { type: 'command', id: 'c1', command: { kind: 'set_lr', lr: 0.03, reason: 'suggestion s4-lr: title of s4-lr' }, source: 'vscode' });
    assert.equal(b.answer('c1', { step: 11, detail: 'lr 0.03' }), true);
    assert.deepEqual(await applied, { step: 11, detail: 'applied s4-lr; lr 0.03' });
    const outcome = log.readAfter(0, 100).at(-1) as RecordOf<'suggestion_outcome'>;
    assert.deepEqual([outcome.kind, outcome.id, outcome.outcome, outcome.step, outcome.source], ['suggestion_outcome', 's4-lr', 'applied', 11, 'vscode']);
    // A schedule change for a step already passed starts at Python's next step; a later one keeps its step.
    const p = b.handle({ id: 'c2', command: { kind: 'apply_suggestion', id: 's4-p', reason: 'why' }, source: 'dashboard' });
    await waitUntil('the schedule to be sent', () => sent.length === 2);
    assert.deepEqual(sent[1], { type: 'command', id: 'c2', command: { kind: 'set_schedule', schedule: { type: 'constant', p: 0.2 }, reason: 'why' }, source: 'dashboard' });
    b.answer('c2', { code: 'NOT_ALLOWED_NOW', message: 'this run has no p schedule' });
    await assert.rejects(p, (e) => protocolCodeFor(e) === 'NOT_ALLOWED_NOW' && /no p schedule/.test((e as Error).message));
    const refused = log.readAfter(0, 100).at(-1) as RecordOf<'suggestion_outcome'>;
    assert.deepEqual([refused.id, refused.outcome, refused.reason], ['s4-p', 'refused', 'this run has no p schedule']);
    const later = b.handle({ id: 'c3', command: { kind: 'apply_suggestion', id: 's4-later' }, source: 'x' });
    await waitUntil('the later schedule to be sent', () => sent.length === 3);
    assert.equal((sent[2] as { command: { fromStep?: number } }).command.fromStep, 50);
    b.answer('c3', { step: 10 });
    await later;
    // Resolved suggestions are refused as the TS trainer refuses them.
    await assert.rejects(b.handle({ id: 'c4', command: { kind: 'apply_suggestion', id: 's4-lr' }, source: 'x' }), (e) => protocolCodeFor(e) === 'NOT_ALLOWED_NOW' && /already applied at step 11/.test((e as Error).message));
    await assert.rejects(b.handle({ id: 'c5', command: { kind: 'dismiss_suggestion', id: 'nope' }, source: 'x' }), (e) => protocolCodeFor(e) === 'INVALID_COMMAND');
    assert.equal(sent.length, 3, 'refused on the host: nothing sent');
  });

  test('with no process connected a suggestion stays pending; dismiss is the host\'s own; race waits for a pause', async () => {
    const { b, log, sent, book } = bridge(false);
    await assert.rejects(b.handle({ id: 'c1', command: { kind: 'apply_suggestion', id: 's4-lr' }, source: 'x' }), (e) => protocolCodeFor(e) === 'NOT_ALLOWED_NOW' && /no Python process is connected/.test((e as Error).message));
    assert.ok(book.get('s4-lr'), 'still pending');
    assert.deepEqual(await b.handle({ id: 'c2', command: { kind: 'dismiss_suggestion', id: 's4-lr' }, source: 'x' }), { step: 10, detail: 'dismissed s4-lr' });
    assert.equal((log.readAfter(0, 100).at(-1) as RecordOf<'suggestion_outcome'>).outcome, 'dismissed');
    await assert.rejects(b.handle({ id: 'c3', command: { kind: 'race', id: 's4-p', steps: 5 }, source: 'x' }), (e) => protocolCodeFor(e) === 'NOT_ALLOWED_NOW' && /compares branches while paused; the run is starting/.test((e as Error).message));
    b.end('crashed');
    await assert.rejects(b.handle({ id: 'c4', command: { kind: 'pause' }, source: 'x' }), (e) => protocolCodeFor(e) === 'RUN_ENDED');
    assert.deepEqual(sent, []);
  });

  test('race: Python runs the branches (measure race), the host judges them by the trainer\'s rule and logs the race record', async () => {
    const { b, log, sent } = bridge();
    log.append({ kind: 'state', step: 10, state: 'paused', reason: 'test' });
    const branch = (valLoss: number | null, p: number, extra = {}) => ({ trainLoss: valLoss === null ? null : valLoss + 0.1, valLoss, p, lr: 0.02, ...extra });
    const raced = b.handle({ id: 'c1', command: { kind: 'race', id: 's4-p', steps: 5 }, source: 'dashboard' });
    await waitUntil('the race to be sent', () => sent.length === 1);
    // A schedule change meant for a step already passed starts at Python's next step, as when applied.
    assert.deepEqual(sent[0], { type: 'measure', id: 'host-race-1', what: 'race', params: { steps: 5, change: { kind: 'set_schedule', schedule: { type: 'constant', p: 0.2 }, reason: 'race s4-p' } } });
    assert.deepEqual(b.measured('host-race-9', {}), { known: false }, 'an id nobody asked for is unknown');
    assert.deepEqual(b.measured('host-race-1', { what: 'race', start: 10, steps: 5, baseline: branch(1.5, 0.1), suggested: branch(1.2, 0.2), heldOutExamples: null, costMs: 40 }), { known: true });
    const ack = await raced;
    assert.equal(ack.step, 10);
    assert.match(ack.detail!, /^race s4-p over 5 step\(s\): suggested wins; held-out loss baseline 1\.50000, suggested 1\.20000 \(scored on the script's probe\(\)\)$/);
    const record = log.readAfter(0, 100).at(-1) as RecordOf<'race'>;
    assert.deepEqual(record, { ...record, kind: 'race', step: 10, suggestionId: 's4-p', rule: 'plateau', steps: 5, baseline: branch(1.5, 0.1), suggested: branch(1.2, 0.2), winner: 'suggested', tieTolerance: 1e-3, heldOutExamples: null, costMs: 40 });
    // Within the tie tolerance; a diverged branch loses whatever the other's loss.
    const tie = b.handle({ id: 'c2', command: { kind: 'race', id: 's4-lr', steps: 5 }, source: 'x' });
    await waitUntil('the second race', () => sent.length === 2);
    b.measured('host-race-2', { what: 'race', start: 10, steps: 5, baseline: branch(1.5, 0.1), suggested: branch(1.5005, 0.1), heldOutExamples: null, costMs: 1 });
    assert.match((await tie).detail!, /tie \(within 0\.001 relative\)/);
    const diverged = b.handle({ id: 'c3', command: { kind: 'race', id: 's4-lr', steps: 5 }, source: 'x' });
    await waitUntil('the third race', () => sent.length === 3);
    b.measured('host-race-3', { what: 'race', start: 10, steps: 5, baseline: branch(9, 0.1), suggested: branch(null, 0.1, { divergedAtStep: 12 }), heldOutExamples: null, costMs: 1 });
    assert.match((await diverged).detail!, /baseline wins/);
    // Python's refusal and a malformed answer: refused, nothing logged.
    const before = log.readAfter(0, 1000).length;
    const refused = b.handle({ id: 'c4', command: { kind: 'race', id: 's4-lr', steps: 5 }, source: 'x' });
    await waitUntil('the fourth race', () => sent.length === 4);
    assert.equal(b.measureRefused('host-race-4', 'NOT_ALLOWED_NOW', 'race needs watch(probe=…)'), true);
    await assert.rejects(refused, (e) => protocolCodeFor(e) === 'NOT_ALLOWED_NOW' && /probe/.test((e as Error).message));
    const malformed = b.handle({ id: 'c5', command: { kind: 'race', id: 's4-lr', steps: 5 }, source: 'x' });
    await waitUntil('the fifth race', () => sent.length === 5);
    assert.deepEqual(b.measured('host-race-5', { what: 'race', start: 10, steps: 5, baseline: branch(1, 0.1), heldOutExamples: null, costMs: 1 }), { known: true, issue: { path: '/result/suggested', message: 'Expected required property' } });
    await assert.rejects(malformed, (e) => protocolCodeFor(e) === 'INTERNAL' && /malformed result \(\/result\/suggested/.test((e as Error).message));
    assert.equal(log.readAfter(0, 1000).length, before, 'no record for a race that did not run or could not be read');
    // The process going away answers a race still waiting.
    const lost = b.handle({ id: 'c6', command: { kind: 'race', id: 's4-lr', steps: 5 }, source: 'x' });
    await waitUntil('the sixth race', () => sent.length === 6);
    b.disconnected(true);
    await assert.rejects(lost, (e) => protocolCodeFor(e) === 'RUN_ENDED' && /before answering the race/.test((e as Error).message));
  });

  test('a command waiting for an answer is answered when the process goes away', async () => {
    const { b, sent } = bridge();
    const waiting = b.handle({ id: 'c1', command: { kind: 'pause' }, source: 'x' });
    const queued = b.handle({ id: 'c2', command: { kind: 'resume' }, source: 'x' });
    await waitUntil('the pause to be sent', () => sent.length === 1);
    b.disconnected(false);
    await assert.rejects(waiting, (e) => protocolCodeFor(e) === 'NOT_ALLOWED_NOW' && /may have taken effect/.test((e as Error).message));
    // The next one goes out only after the first was answered: one command at a time.
    await waitUntil('the resume to be sent', () => sent.length === 2);
    b.end('crashed');
    await assert.rejects(queued, (e) => protocolCodeFor(e) === 'RUN_ENDED');
  });
});

test("a command killed mid-line: the host ends that line, so its own next line starts one", async () => {
  const collect = () => {
    const stream = new PassThrough();
    let text = '';
    stream.on('data', (d) => (text += d));
    return { stream, text: () => text };
  };
  const out = collect();
  const err = collect();
  const child = new SupervisedChild({ command: process.execPath, args: ['-e', "process.stdout.write('whole\\npartial'); process.stderr.write('line\\n')"], env: process.env, stdout: out.stream, stderr: err.stream });
  await within('the command to exit', child.exited);
  assert.equal(out.text(), 'whole\npartial\n');
  assert.equal(err.text(), 'line\n', 'a stream that ended its line gets nothing more');
});

describe('the CLI', () => {
  function runCli(args: string[], env: Record<string, string>) {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'trainer', 'cli.ts'), 'run', ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    return { exit, out: () => out, err: () => err };
  }

  test('prints the listening line and the dashboard line first, passes the output through, and exits 0 when the run finished, 1 when the command failed', async () => {
    const dir = tmp();
    const file = join(dir, 'py.muonscope.json');
    writeFileSync(file, JSON.stringify({ name: 'cli-py', steps: 7, advisor: { mode: 'off' } }));
    const ok = runCli([file, '--out', join(dir, 'runs'), '--', process.execPath, FAKE], { FAKE_MODE: 'finish', FAKE_STEPS: '2' });
    const failed = runCli(['--out', join(dir, 'runs'), '--', process.execPath, FAKE], { FAKE_MODE: 'fail', FAKE_STEPS: '1' });
    // Three CLIs at once: each spends most of its time starting up.
    const usage = runCli(['--out', join(dir, 'runs')], {});
    assert.equal(await within('the CLI to exit after the run finished', ok.exit), 0, ok.err());
    const [first, second, ...rest] = ok.out().split('\n');
    const listening = JSON.parse(first) as { event: string; url: string; token: string; runDir: string };
    assert.equal(listening.event, 'listening');
    assert.match(listening.url, /^ws:\/\/127\.0\.0\.1:\d+$/);
    assert.match(listening.token, /^[0-9a-f]{32}$/);
    assert.equal(second, `dashboard: ${listening.url.replace(/^ws/, 'http')}/#token=${listening.token}`);
    assert.ok(rest.includes('fake: env run dir exists, config exists'), ok.out());
    const records = readRunLog(join(listening.runDir, 'log.ndjson')).records;
    assert.deepEqual(records.map((r) => r.kind), ['run_started', 'step', 'step', 'state']);
    assert.equal(JSON.parse(readFileSync(join(listening.runDir, 'config.json'), 'utf8')).steps, 7);

    assert.equal(await within('the CLI to exit after the command failed', failed.exit), 1, failed.err());
    const runDir = (JSON.parse(failed.out().split('\n')[0]) as { runDir: string }).runDir;
    const state = readRunLog(join(runDir, 'log.ndjson')).records.at(-1) as RecordOf<'state'>;
    assert.equal(state.state, 'crashed');
    assert.match(state.reason, /^the command exited with code 3; its last lines:\n[^]*RuntimeError: fake failure/);

    assert.equal(await within('the CLI to refuse a run without a command', usage.exit), 4);
    assert.match(usage.err(), /run needs the training command after --/);
  });

  test("a config's own command runs when nothing follows --; `train` refuses such a config and points to `run`", async () => {
    const dir = tmp();
    const file = join(dir, 'cmd.muonscope.json');
    writeFileSync(file, JSON.stringify({ name: 'cli-cmd', steps: 3, advisor: { mode: 'off' }, command: [process.execPath, FAKE] }));
    const own = runCli([file, '--out', join(dir, 'runs')], { FAKE_MODE: 'finish', FAKE_STEPS: '2' });
    const train = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'trainer', 'cli.ts'), 'train', file, '--out', join(dir, 'runs')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let trainErr = '';
    train.stderr.on('data', (d) => (trainErr += d));
    const trainExit = new Promise<number | null>((resolve) => train.on('close', (code) => resolve(code)));
    assert.equal(await within("the CLI to run the config's command", own.exit), 0, own.err());
    const runDir = (JSON.parse(own.out().split('\n')[0]) as { runDir: string }).runDir;
    assert.deepEqual(readRunLog(join(runDir, 'log.ndjson')).records.map((r) => r.kind), ['run_started', 'step', 'step', 'state']);
    assert.equal(await within('train to refuse a command config', trainExit), 2);
    assert.match(trainErr, /names a training command .* run it with `muonscope run /);
  });
});

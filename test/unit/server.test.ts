// The trainer's WebSocket server: who may connect, what each client receives (replay + live, no gaps, no
// duplicates), command ordering and error codes, robustness to garbage frames, and backpressure.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import WebSocket from 'ws';
import { MuonscopeError } from '../../common/errors.js';
import { PROTOCOL_VERSION, validateCommand, validateServerMessage, type LogRecord, type NewLogRecord, type ServerMessage } from '../../common/protocol.js';
import { Outbox, toOutgoing } from '../../trainer/server/outbox.js';
import { MemoryRecordSource } from '../../trainer/server/record-source.js';
import { mulberry32 } from '../../trainer/data/random.js';
import { generateToken, startServer, type CommandHandler, type ServerOptions, type TrainerServer } from '../../trainer/server/server.js';
import { assertAbove, assertAtLeast, assertAtMost, assertBelow } from '../helpers/bounds.js';
import { SLOW_TEST, WAIT_MS, waitUntil, within } from '../helpers/wait.js';

const TOKEN = generateToken();
const AUTH = { Authorization: `Bearer ${TOKEN}` };

/** Seeded, so a failing fuzz case reproduces. */
const rng = mulberry32;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const tick = () => new Promise((r) => setImmediate(r));

const stepRecord = (step: number): NewLogRecord => ({ kind: 'step', step, loss: 1 / (step + 1), lr: 0.01, p: 0.5, stepMs: 1 });
const spectraRecord = (step: number, layer: string, n: number, random: () => number): NewLogRecord => {
  const values = () => Array.from({ length: n }, random);
  return { kind: 'spectra', step, layer, exact: true, G: values(), M: values(), O: values(), W: values() };
};

const servers: TrainerServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function setup(opts: Partial<ServerOptions> = {}) {
  const source = new MemoryRecordSource();
  const logs: string[] = [];
  const onCommand: CommandHandler = opts.onCommand ?? (async () => ({ step: 0 }));
  const server = await startServer({ token: TOKEN, runId: 'run-1', runDir: '/tmp/run-1', source, onCommand, log: (l) => logs.push(l), ...opts });
  servers.push(server);
  return { server, source, logs };
}

/** A ws client that keeps every parsed message, and can wait for the next one of some type. */
class Client {
  readonly messages: ServerMessage[] = [];
  private seen = 0;
  closeCode: number | null = null;
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => this.messages.push(JSON.parse(String(data)) as ServerMessage));
    ws.on('close', (code) => (this.closeCode = code));
    ws.on('error', () => {});
  }

  static open(url: string, headers: Record<string, string> = AUTH): Promise<Client> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers, perMessageDeflate: false });
      const client = new Client(ws);
      ws.once('open', () => resolve(client));
      ws.once('error', reject);
    });
  }

  send(msg: unknown): void {
    this.ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
  }

  /** The next message (after those already taken) whose type is in `types`; earlier others are skipped. */
  async next<T extends ServerMessage['type']>(types: T[], timeoutMs = WAIT_MS): Promise<Extract<ServerMessage, { type: T }>> {
    const wanted = types.join('|');
    const seen = await waitUntil(
      `a ${wanted} message`,
      () => {
        while (this.seen < this.messages.length) {
          const m = this.messages[this.seen++];
          if ((types as string[]).includes(m.type)) return { hit: m as Extract<ServerMessage, { type: T }> };
        }
        if (this.closeCode !== null) throw new Error(`socket closed (${this.closeCode}) while waiting for ${wanted}`);
        return { hit: undefined, received: this.messages.map((m) => m.type).slice(-5) };
      },
      { until: (s) => s.hit !== undefined, timeoutMs, intervalMs: 1 },
    );
    return seen.hit!;
  }

  records(): LogRecord[] {
    return this.messages.flatMap((m) => (m.type === 'events' ? m.records : []));
  }

  closed(): Promise<number> {
    return new Promise((resolve) => (this.closeCode !== null ? resolve(this.closeCode) : this.ws.once('close', (code) => resolve(code))));
  }
}

/** The HTTP status an upgrade attempt got: 101 when the socket opened. */
function upgradeStatus(url: string, headers: Record<string, string> = {}, origin?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers, origin, perMessageDeflate: false });
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('unexpected-response', (req, res) => {
      resolve(res.statusCode ?? 0);
      req.destroy();
    });
    ws.once('error', reject);
  });
}

describe('binding and HTTP', () => {
  test('binds 127.0.0.1 by default, answers /healthz, tries the http hook first', SLOW_TEST, async () => {
    const { server, logs } = await setup({ httpHandler: (req, res) => (req.url === '/hook' ? (res.end('hooked'), true) : false) });
    assert.match(server.url, /^ws:\/\/127\.0\.0\.1:\d+$/);
    assert.ok(!logs.some((l) => /reachable from the network/.test(l)), logs.join('\n'));
    const base = `http://127.0.0.1:${server.port}`;
    assert.equal(await (await fetch(`${base}/healthz`)).text(), 'ok');
    assert.equal((await fetch(`${base}/`)).status, 404);
    assert.equal(await (await fetch(`${base}/hook`)).text(), 'hooked');
  });

  test('an explicit non-loopback host is used, with a warning that it is reachable from the network', SLOW_TEST, async () => {
    const { server, logs } = await setup({ host: '0.0.0.0' });
    assert.ok(logs.some((l) => /warning/.test(l) && /reachable from the network/.test(l) && /token/.test(l)), logs.join('\n'));
    const c = await Client.open(server.url);
    assert.equal((await c.next(['hello'])).type, 'hello');
    c.ws.close();
  });
});

describe('connect', () => {
  test('hello carries protocol, run and lastSeq; a client that never subscribes gets no records', SLOW_TEST, async () => {
    const { server, source } = await setup();
    for (let i = 1; i <= 3; i++) source.append(stepRecord(i));
    const c = await Client.open(server.url);
    const hello = await c.next(['hello']);
    assert.deepEqual(hello, { type: 'hello', protocol: PROTOCOL_VERSION, runId: 'run-1', runDir: '/tmp/run-1', lastSeq: 3 });
    const helloCheck = validateServerMessage(hello);
    assert.ok(helloCheck.ok, JSON.stringify(!helloCheck.ok && helloCheck.issues));
    const watcher = await Client.open(server.url);
    watcher.send({ type: 'subscribe', afterSeq: 3 });
    await watcher.next(['replayed']);
    for (let i = 4; i <= 10; i++) source.append(stepRecord(i));
    // The subscribed watcher receiving 4..10 marks the moment the live records went out.
    await waitUntil('the live records 4..10 at the subscribed watcher', () => watcher.records().map((r) => r.seq), { until: (seqs) => seqs.at(-1) === 10 });
    assert.deepEqual(
      c.messages.map((m) => m.type),
      ['hello'],
      'the client that never subscribed got nothing of them',
    );
    // Subscribing then brings the whole history, once.
    c.send({ type: 'subscribe', afterSeq: 0 });
    assert.equal((await c.next(['replayed'])).throughSeq, 10);
    assert.deepEqual(c.records().map((r) => r.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    c.ws.close();
    watcher.ws.close();
  });

  test('auth: missing, wrong and wrong-length tokens get 401; header and query tokens work; Origin is checked', SLOW_TEST, async () => {
    const { server } = await setup({ allowedOrigins: ['vscode-webview://abc'] });
    const url = server.url;
    assert.equal(await upgradeStatus(url), 401, 'no token');
    assert.equal(await upgradeStatus(url, { Authorization: `Bearer ${generateToken()}` }), 401, 'wrong token');
    assert.equal(await upgradeStatus(url, { Authorization: `Bearer ${TOKEN}00` }), 401, 'longer token');
    assert.equal(await upgradeStatus(url, { Authorization: `Bearer ${TOKEN.slice(1)}` }), 401, 'shorter token');
    assert.equal(await upgradeStatus(url, { Authorization: `Basic ${TOKEN}` }), 401, 'wrong scheme');
    assert.equal(await upgradeStatus(`${url}/?token=${generateToken()}`), 401, 'wrong query token');
    assert.equal(await upgradeStatus(url, AUTH), 101, 'header token');
    assert.equal(await upgradeStatus(`${url}/?token=${TOKEN}`), 101, 'query token');
    assert.equal(await upgradeStatus(url, AUTH, 'http://evil.example'), 403, 'foreign origin');
    assert.equal(await upgradeStatus(url, AUTH, 'http://localhost:1'), 403, 'loopback origin on another port');
    assert.equal(await upgradeStatus(url, AUTH, `http://127.0.0.1:${server.port}`), 101, "the trainer's own origin");
    assert.equal(await upgradeStatus(url, AUTH, 'vscode-webview://abc'), 101, 'an allowed origin');
    assert.equal(await upgradeStatus(`${url}/?token=${generateToken()}`, {}, 'http://evil.example'), 401, 'no token beats a bad origin');
    await waitUntil('refused and closed sockets to be gone', () => server.clients(), { until: (n) => n === 0 });
  });
});

describe('replay and live records', () => {
  test('5000 records with clients cut off mid-stream: each ends with exactly 1..N in order', SLOW_TEST, async (t) => {
    const N = 5000;
    const { server, source } = await setup();
    const random = rng(7);

    const producer = (async () => {
      while (source.lastSeq() < N) {
        for (let i = 0; i < 25 && source.lastSeq() < N; i++) source.append(stepRecord(source.lastSeq() + 1));
        await sleep(1);
      }
    })();

    // Reconnects with the last seq it kept until it has all N; each connection is cut (terminate) after a
    // random number of records, so cuts land both inside replays and inside the live stream.
    async function consumer(startDelay: number): Promise<{ seqs: number[]; cuts: number; violations: string[] }> {
      await sleep(startDelay);
      const seqs: number[] = [];
      const violations: string[] = [];
      let last = 0;
      let cuts = 0;
      while (last < N) {
        await within(`records after seq ${last} (consumer starting at ${startDelay} ms, ${cuts} cuts so far)`, new Promise<void>((resolve) => {
          const ws = new WebSocket(server.url, { headers: AUTH, perMessageDeflate: false });
          const cutAfter = 50 + Math.floor(random() * 900);
          let alive = true;
          let received = 0;
          const end = () => {
            alive = false;
            resolve();
          };
          ws.on('error', () => {});
          ws.on('open', () => ws.send(JSON.stringify({ type: 'subscribe', afterSeq: last })));
          ws.on('close', () => alive && end());
          ws.on('message', (data) => {
            if (!alive) return;
            const m = JSON.parse(String(data)) as ServerMessage;
            if (m.type !== 'events') return;
            for (const r of m.records) {
              if (r.seq !== last + 1) violations.push(`got ${r.seq} after ${last}`);
              seqs.push(r.seq);
              last = r.seq;
            }
            if (last >= N) {
              ws.close();
              end();
            } else if ((received += m.records.length) >= cutAfter) {
              cuts++;
              ws.terminate();
              end();
            }
          });
        }));
      }
      return { seqs, cuts, violations };
    }

    const results = await Promise.all([0, 20, 60, 150].map(consumer));
    await producer;
    const expected = Array.from({ length: N }, (_, i) => i + 1);
    for (const r of results) {
      assert.deepEqual(r.violations, []);
      assert.deepEqual(r.seqs, expected);
      assertAtLeast(r.cuts, 3, `only ${r.cuts} forced disconnects`);
    }
    await waitUntil('cut-off clients to be cleaned up', () => server.clients(), { until: (n) => n === 0 });

    // Throughput of a full replay, for the record.
    const t0 = performance.now();
    const c = await Client.open(server.url);
    c.send({ type: 'subscribe', afterSeq: 0 });
    assert.equal((await c.next(['replayed'])).throughSeq, N);
    const ms = performance.now() - t0;
    assert.equal(c.records().length, N);
    t.diagnostic(`full replay of ${N} step records: ${ms.toFixed(0)} ms (${Math.round((N / ms) * 1000)} records/s); cuts per client: ${results.map((r) => r.cuts).join(', ')}`);
    c.ws.close();
  });

  test('records appended during a replay are neither lost nor duplicated', SLOW_TEST, async () => {
    const { server, source } = await setup();
    for (let i = 1; i <= 3000; i++) source.append(stepRecord(i));
    const c = await Client.open(server.url);
    c.send({ type: 'subscribe', afterSeq: 1000 });
    // Appends interleave with the replay's chunks (it yields between them).
    for (let i = 0; i < 20; i++) {
      for (let j = 0; j < 10; j++) source.append(stepRecord(source.lastSeq() + 1));
      await tick();
    }
    const replayed = await c.next(['replayed']);
    assertAtLeast(replayed.throughSeq, 3000, 'the replay reaches at least the records there at subscribe time');
    await waitUntil('the live tail up to seq 3200', () => c.records().at(-1)?.seq, { until: (seq) => seq === 3200 });
    assert.deepEqual(
      c.records().map((r) => r.seq),
      Array.from({ length: 2200 }, (_, i) => i + 1001),
    );
    c.ws.close();
  });

  test('live records within 10 ms go out as one message, at most 500 records each', SLOW_TEST, async () => {
    const { server, source } = await setup();
    const c = await Client.open(server.url);
    c.send({ type: 'subscribe', afterSeq: 0 });
    assert.equal((await c.next(['replayed'])).throughSeq, 0);

    for (let i = 0; i < 100; i++) source.append(stepRecord(i));
    const burst = await c.next(['events']);
    assert.equal(burst.records.length, 100);

    // A lone record is not held back waiting for company.
    for (let i = 0; i < 3; i++) {
      source.append(stepRecord(i));
      assert.equal((await c.next(['events'])).records.length, 1);
    }

    for (let i = 0; i < 1200; i++) source.append(stepRecord(i));
    const big = [await c.next(['events']), await c.next(['events']), await c.next(['events'])];
    assert.deepEqual(
      big.map((m) => m.records.length),
      [500, 500, 200],
    );
    assert.deepEqual(
      c.records().map((r) => r.seq),
      Array.from({ length: 1303 }, (_, i) => i + 1),
    );
    const second = await Client.open(server.url);
    second.send({ type: 'subscribe', afterSeq: 0 });
    second.send({ type: 'subscribe', afterSeq: 5 });
    const err = await second.next(['error']);
    assert.equal(err.code, 'BAD_MESSAGE', 'a second subscribe on one socket is refused');
    await second.next(['replayed']);
    c.ws.close();
    second.ws.close();
  });
});

describe('commands', () => {
  test('commands from 3 clients are applied one at a time in arrival order, each acked', SLOW_TEST, async () => {
    const calls: { id: string; source: string; clientId: string }[] = [];
    let active = 0;
    let maxActive = 0;
    const random = rng(3);
    const { server } = await setup({
      onCommand: async (msg, clientId) => {
        calls.push({ id: msg.id, source: msg.source, clientId });
        maxActive = Math.max(maxActive, ++active);
        await sleep(random() * 3);
        active--;
        return { step: calls.length, detail: `did ${msg.id}` };
      },
    });
    const clients = await Promise.all([0, 1, 2].map(() => Client.open(server.url)));
    const sent: string[] = [];
    for (let i = 0; i < 30; i++) {
      const c = clients[i % 3];
      const id = `c${i % 3}-${i}`;
      const before = server.debugStats().commandsReceived;
      c.send({ type: 'command', id, command: { kind: 'set_lr', lr: 0.001 * (i + 1) }, ...(i % 2 ? { source: 'webview' } : {}) });
      sent.push(id);
      // Wait until the server has it, so the arrival order is the order sent.
      await waitUntil(`command ${id} to arrive (received before it: ${before})`, () => server.debugStats().commandsReceived, { until: (n) => n === before + 1 });
    }
    for (const [k, c] of clients.entries()) {
      for (let i = k; i < 30; i += 3) {
        const ack = await c.next(['ack', 'error']);
        assert.deepEqual(ack, { type: 'ack', id: `c${k}-${i}`, kind: 'set_lr', step: sent.indexOf(`c${k}-${i}`) + 1, detail: `did c${k}-${i}` });
      }
    }
    assert.deepEqual(
      calls.map((c) => c.id),
      sent,
    );
    assert.equal(maxActive, 1, 'never two commands at once');
    assert.equal(calls[1].source, 'webview');
    assert.equal(calls[0].source, calls[0].clientId, 'without a source, the connection id is recorded');
    assert.equal(new Set(calls.map((c) => c.clientId)).size, 3);
    for (const c of clients) c.ws.close();
  });

  test('a handler that throws gets the mapped error code with the command id, and the server goes on', SLOW_TEST, async () => {
    const cases: [string, () => unknown, string][] = [
      ['INVALID_ARGUMENT', () => new MuonscopeError('INVALID_ARGUMENT', 'bad'), 'INVALID_COMMAND'],
      ['P_OUT_OF_RANGE', () => new MuonscopeError('P_OUT_OF_RANGE', 'bad p'), 'INVALID_COMMAND'],
      ['UNKNOWN_SCHEDULE', () => new MuonscopeError('UNKNOWN_SCHEDULE', 'what'), 'INVALID_COMMAND'],
      ['INVALID_HYPERPARAMETER', () => new MuonscopeError('INVALID_HYPERPARAMETER', 'lr'), 'INVALID_COMMAND'],
      ['INVALID_STATE', () => new MuonscopeError('INVALID_STATE', 'not paused'), 'NOT_ALLOWED_NOW'],
      ['run-ended', () => new MuonscopeError('INVALID_STATE', 'the run has finished', { protocolCode: 'RUN_ENDED' }), 'RUN_ENDED'],
      ['bogus-override', () => new MuonscopeError('INVALID_STATE', 'x', { protocolCode: 'NOPE' }), 'NOT_ALLOWED_NOW'],
      ['NON_FINITE', () => new MuonscopeError('NON_FINITE', 'nan'), 'INTERNAL'],
      ['plain', () => new Error('kaboom'), 'INTERNAL'],
      ['string', () => 'a thrown string', 'INTERNAL'],
    ];
    const { server, logs } = await setup({
      onCommand: (msg) => {
        const reason = msg.command.reason;
        if (reason === 'sync') throw new Error('thrown synchronously');
        if (reason === 'no-step') return Promise.resolve({} as { step: number });
        const found = cases.find(([name]) => name === reason);
        if (found) return Promise.reject(found[1]());
        return Promise.resolve({ step: 42 });
      },
    });
    const c = await Client.open(server.url);
    const expectations: [string, string][] = [...cases.map(([name, , code]): [string, string] => [name, code]), ['sync', 'INTERNAL'], ['no-step', 'INTERNAL']];
    for (const [reason, code] of expectations) {
      c.send({ type: 'command', id: `id-${reason}`, command: { kind: 'pause', reason } });
      const reply = await c.next(['ack', 'error']);
      assert.equal(reply.type, 'error', reason);
      assert.equal(reply.type === 'error' && reply.code, code, reason);
      assert.equal(reply.id, `id-${reason}`);
      const replyCheck = validateServerMessage(reply);
      assert.ok(replyCheck.ok, JSON.stringify(!replyCheck.ok && replyCheck.issues));
    }
    assert.ok(logs.some((l) => /kaboom/.test(l)), `internal failures are logged: ${logs.join('\n')}`);
    c.send({ type: 'command', id: 'bad-lr', command: { kind: 'set_lr', lr: -1 } });
    const invalid = await c.next(['ack', 'error']);
    assert.deepEqual([invalid.type, invalid.type === 'error' && invalid.code, invalid.id], ['error', 'INVALID_COMMAND', 'bad-lr']);
    c.send({ type: 'command', id: 'fine', command: { kind: 'resume' } });
    assert.deepEqual(await c.next(['ack', 'error']), { type: 'ack', id: 'fine', kind: 'resume', step: 42 });
    c.ws.close();
  });
});

describe('robustness', () => {
  test('fuzz: 1200 random and malformed frames from 4 connections; the server still serves', SLOW_TEST, async (t) => {
    const received: unknown[] = [];
    const { server, source } = await setup({
      onCommand: async (msg) => {
        received.push(msg);
        return { step: 1 };
      },
    });
    for (let i = 1; i <= 10; i++) source.append(stepRecord(i));
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);

    type Expect = 'error' | 'reply' | 'ack' | 'replayed' | 'close';
    interface Frame {
      data: string | Buffer;
      binary?: boolean;
      expect: Expect;
      code?: string;
      id?: string;
    }
    const valid = (k: number) => ({ type: 'command', id: `valid-${k}`, command: { kind: 'set_lr', lr: 0.01 } });
    const badCommands: Record<string, unknown>[] = [
      { kind: 'set_lr', lr: -1 },
      { kind: 'set_lr', lr: 1e308 },
      { kind: 'set_lr', lr: 'NaN' },
      { kind: 'set_lr', lr: '0.1' },
      { kind: 'set_lr' },
      { kind: 'step', n: 0 },
      { kind: 'step', n: 1.5 },
      { kind: 'step', n: 2 ** 53 + 2 },
      { kind: 'step', n: 1e21 },
      { kind: 'set_schedule', schedule: { type: 'nope' } },
      { kind: 'set_schedule', schedule: { type: 'constant', p: 'x' } },
      { kind: 'set_schedule', schedule: { type: 'reversed', of: { type: 'reversed', of: { type: 'constant', p: 1 } } } },
      { kind: 'set_diagnostics', every: 0 },
      { kind: 'explode' },
      { kind: 'pause', reason: 'x'.repeat(501) },
      { kind: 'pause', extra: true },
      // JSON.parse makes `__proto__` an own key (an object literal would set the prototype instead).
      JSON.parse('{"kind":"pause","__proto__":{"polluted":true}}') as Record<string, unknown>,
      { kind: 'pause', constructor: { prototype: { polluted: true } } },
      { kind: ['pause'] },
    ];
    const badMessages: unknown[] = [
      null,
      [],
      0,
      true,
      'subscribe',
      {},
      { type: 'hello' },
      { type: 'events', records: [] },
      { type: 'subscribe' },
      { type: 'subscribe', afterSeq: -1 },
      { type: 'subscribe', afterSeq: 1.5 },
      { type: 'subscribe', afterSeq: '5' },
      { type: 'subscribe', afterSeq: 'NaN' },
      { type: 'subscribe', afterSeq: null },
      { type: 'subscribe', afterSeq: 0, extra: 1 },
      { type: 'command', id: 5, command: { kind: 'pause' } },
      { type: 'command', id: '', command: { kind: 'pause' } },
      { type: 'command', id: 'x'.repeat(65), command: { kind: 'pause' } },
      { type: 'command', command: { kind: 'pause' } },
      { type: 'command', id: 'no-command' },
      { type: 'command', id: 'src', command: { kind: 'pause' }, source: 7 },
    ];

    function frame(random: () => number, k: number, conn: number): Frame {
      const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)];
      const id = `fuzz-${conn}-${k}`;
      switch (Math.floor(random() * 16)) {
        case 0:
          return { data: Buffer.from(Array.from({ length: 1 + Math.floor(random() * 200) }, () => Math.floor(random() * 256))), binary: true, expect: 'error', code: 'BAD_FRAME' };
        case 1:
          return { data: JSON.stringify(valid(k)), binary: true, expect: 'error', code: 'BAD_FRAME' };
        case 2:
          return { data: String.fromCharCode(...Array.from({ length: 1 + Math.floor(random() * 100) }, () => 32 + Math.floor(random() * 0xd7c0))), expect: 'error' };
        case 3: {
          const whole = JSON.stringify({ type: 'command', id, command: pick(badCommands) });
          return { data: whole.slice(0, Math.floor(random() * (whole.length - 1))), expect: 'error', code: 'BAD_FRAME' };
        }
        case 4:
        case 5:
          return { data: JSON.stringify({ type: 'command', id, command: pick(badCommands) }), expect: 'error', code: 'INVALID_COMMAND', id };
        case 6:
          return { data: JSON.stringify(pick(badMessages)), expect: 'error' };
        case 7:
          return { data: pick(['', ' ', 'NaN', 'Infinity', '{"type":"subscribe","afterSeq":NaN}', '{"type":"command","id":"a","command":{"kind":"set_lr","lr":Infinity}}', "{'type':'subscribe'}", '{"type":"subscribe","afterSeq":0}}', '\u0000']), expect: 'error', code: 'BAD_FRAME' };
        case 8:
          return { data: `{"type":"command","id":"${id}","command":{"kind":"set_lr","lr":1e999}}`, expect: 'error', code: 'INVALID_COMMAND', id };
        case 9: {
          // Both shapes stay under the 64 KiB frame limit (2 and 6 bytes a level).
          const array = random() < 0.5;
          const depth = 1000 + Math.floor(random() * (array ? 31000 : 8000));
          return { data: array ? '['.repeat(depth) + ']'.repeat(depth) : `{"type":"command","id":"${id}","command":{"kind":"pause","reason":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}}`, expect: 'error' };
        }
        case 10:
          return { data: `{"__proto__":{"polluted":true},"type":"command","id":"${id}","command":{"kind":"pause","__proto__":{"polluted":true}}}`, expect: 'error', id };
        case 11:
          return { data: JSON.stringify({ type: pick(['Subscribe', 'COMMAND', 'ack', 'hello', 'replayed', 'toString', '__proto__']), id, afterSeq: 0, command: { kind: 'pause' } }), expect: 'error' };
        case 12:
          return { data: randomJson(random, 4), expect: 'reply' };
        case 13:
          return random() < 0.15 ? { data: 'x'.repeat(64 * 1024 + 1 + Math.floor(random() * 10000)), expect: 'close' } : { data: JSON.stringify(valid(k)), expect: 'ack', id: `valid-${k}` };
        case 14:
          return random() < 0.1 ? { data: Buffer.from([0x7b, 0xff, 0xfe, 0x80, 0x7d]), binary: false, expect: 'close' } : { data: JSON.stringify({ type: 'subscribe', afterSeq: Math.floor(random() * 12) }), expect: 'reply' };
        default:
          return { data: JSON.stringify({ type: 'command', id, command: { kind: 'pause', reason: pick([1, null, [], {}, false]) } }), expect: 'error', code: 'INVALID_COMMAND', id };
      }
    }

    function randomJson(random: () => number, depth: number): string {
      const keys = ['type', 'id', 'command', 'kind', 'afterSeq', 'lr', '__proto__', 'constructor', 'prototype', 'x'];
      const value = (d: number): unknown => {
        const r = random();
        if (d <= 0 || r < 0.3) return [0, -1, 1e308, -0, 2 ** 60, 'command', 'subscribe', 'pause', '', null, true, 'NaN'][Math.floor(random() * 12)];
        if (r < 0.6) return Array.from({ length: Math.floor(random() * 4) }, () => value(d - 1));
        return Object.fromEntries(Array.from({ length: Math.floor(random() * 5) }, () => [keys[Math.floor(random() * keys.length)], value(d - 1)]));
      };
      return JSON.stringify(value(depth));
    }

    const validSent: string[] = [];
    async function fuzzConnection(conn: number, frames: number): Promise<number> {
      const random = rng(1000 + conn);
      let c = await Client.open(server.url);
      let closes = 0;
      for (let k = 0; k < frames; k++) {
        const f = frame(random, k, conn);
        if (f.expect === 'ack' && f.id) validSent.push(f.id);
        c.ws.send(f.data, { binary: f.binary ?? typeof f.data !== 'string' });
        if (f.expect === 'close') {
          const code = await c.closed();
          assert.ok(code === 1009 || code === 1007, `frame ${k} closed with ${code}`);
          closes++;
          c = await Client.open(server.url);
          continue;
        }
        const reply = await c.next(['error', 'ack', 'replayed']);
        assert.ok(validateServerMessage(reply).ok, `reply to frame ${k} is a valid server message`);
        if (f.expect === 'error' || f.expect === 'ack') assert.equal(reply.type, f.expect, `frame ${k}: ${String(f.data).slice(0, 200)}`);
        if (f.code) assert.equal(reply.type === 'error' && reply.code, f.code, `frame ${k}: ${String(f.data).slice(0, 200)}`);
        if (f.id) assert.equal('id' in reply && reply.id, f.id, `frame ${k} reply names its id`);
      }
      // The same (possibly long-lived) connection still works.
      c.send({ type: 'command', id: `after-${conn}`, command: { kind: 'checkpoint' } });
      assert.deepEqual(await c.next(['ack', 'error']), { type: 'ack', id: `after-${conn}`, kind: 'checkpoint', step: 1 });
      c.ws.close();
      return closes;
    }

    const closes = await Promise.all([0, 1, 2, 3].map((conn) => fuzzConnection(conn, 300)));

    const fresh = await Client.open(server.url);
    fresh.send({ type: 'subscribe', afterSeq: 4 });
    assert.equal((await fresh.next(['replayed'])).throughSeq, 10);
    assert.deepEqual(
      fresh.records().map((r) => r.seq),
      [5, 6, 7, 8, 9, 10],
    );
    source.append(stepRecord(11));
    await waitUntil('a live record after the fuzz', () => fresh.records().map((r) => r.seq), { until: (seqs) => seqs.length === 7 });
    fresh.send({ type: 'command', id: 'final', command: { kind: 'stop', reason: 'done' } });
    assert.equal((await fresh.next(['ack'])).id, 'final');
    fresh.ws.close();

    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
    assert.deepEqual(uncaught, []);
    assert.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched');
    for (const msg of received) {
      const m = msg as { command: unknown; id: string };
      assert.ok(validateCommand(m.command).ok, `onCommand got an invalid command: ${JSON.stringify(m)}`);
      assert.ok(/^(valid-|after-|final$)/.test(m.id), `onCommand got a frame built to be invalid: ${m.id}`);
    }
    // Random JSON (case 12) may happen to be a valid command only with ids like these; none of ours.
    assert.deepEqual(validSent.filter((id) => !received.some((m) => (m as { id: string }).id === id)), [], 'valid commands that never reached onCommand');
    t.diagnostic(`1200 fuzz frames, ${closes.reduce((a, b) => a + b, 0)} closed connections (oversized / invalid UTF-8), ${received.length} valid commands applied`);
  });

  test('close() sends the live clients what is still queued, closes every socket with 1001 and stops listening', SLOW_TEST, async () => {
    const { server, source } = await setup();
    const a = await Client.open(server.url);
    const b = await Client.open(server.url);
    b.send({ type: 'subscribe', afterSeq: 0 });
    await b.next(['replayed']);
    const codes = Promise.all([a.closed(), b.closed()]);
    // Records appended just before the close, still waiting for the 10 ms batch, reach the live client first.
    for (let i = 0; i < 3; i++) source.append(stepRecord(i));
    await server.close();
    assert.deepEqual(await codes, [1001, 1001]);
    assert.deepEqual(b.records().map((r) => r.seq), [1, 2, 3], 'the last records arrive before the close frame');
    assert.equal(server.clients(), 0);
    await assert.rejects(fetch(`http://127.0.0.1:${server.port}/healthz`));
  });
});

describe('backpressure', () => {
  test('outbox: while coalescing, only the latest spectra per layer and layer_stats stay queued, in seq order', () => {
    const box = new Outbox();
    const random = rng(1);
    const source = new MemoryRecordSource();
    const push = (r: NewLogRecord) => box.push(toOutgoing(source.append(r)));
    push(spectraRecord(1, 'a', 2, random)); // 1
    push(spectraRecord(1, 'a', 2, random)); // 2: not coalescing yet, both kept
    assert.equal(box.snapshot().coalescable, 2);
    box.startCoalescing();
    assert.equal(box.snapshot().coalescable, 1, 'starting applies to what is queued');
    push(stepRecord(2)); // 3
    push(spectraRecord(2, 'b', 2, random)); // 4
    push({ kind: 'layer_stats', step: 2, layers: [] }); // 5
    push(spectraRecord(3, 'a', 2, random)); // 6
    push({ kind: 'layer_stats', step: 3, layers: [] }); // 7
    push(stepRecord(3)); // 8
    box.stopCoalescing();
    assert.deepEqual(
      box.take(100, 1e9).map((o) => o.seq),
      [3, 4, 6, 7, 8],
    );
    assert.equal(box.snapshot().coalescedAway, 3);
    assert.ok(box.empty, `the outbox is empty after taking everything: ${JSON.stringify(box.snapshot())}`);
    assert.equal(box.bytes, 0);
  });

  test('a stalled client: memory stays bounded, scalars all arrive, spectra are coalesced to the latest per layer', SLOW_TEST, async (t) => {
    const highWaterBytes = 256 * 1024;
    const { server, source } = await setup({ highWaterBytes });
    const stalled = await Client.open(server.url);
    const healthy = await Client.open(server.url);
    for (const c of [stalled, healthy]) {
      c.send({ type: 'subscribe', afterSeq: 0 });
      await c.next(['replayed']);
    }
    (stalled.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();

    const random = rng(11);
    const layers = ['l0', 'l1', 'l2', 'l3'];
    const TOTAL = 20000;
    const scalarSeqs: number[] = [];
    const lastSpectra = new Map<string, number>();
    let spectraBytes = 0;
    let step = 0;
    let peak = { bytes: 0, records: 0, coalescable: 0, buffered: 0 };
    let sawCongestion = false;
    while (source.lastSeq() < TOTAL) {
      for (let i = 0; i < 100 && source.lastSeq() < TOTAL; i++) {
        step++;
        let r: LogRecord;
        if (step % 15 < 10) scalarSeqs.push((r = source.append(stepRecord(step))).seq);
        else if (step % 15 < 14) {
          r = source.append(spectraRecord(step, layers[step % 15 - 10], 100, random));
          lastSpectra.set(layers[step % 15 - 10], r.seq);
          spectraBytes += JSON.stringify(r).length;
        } else r = source.append({ kind: 'layer_stats', step, layers: [] });
      }
      const s = server.debugStats().clients.find((c) => c.id === 'ws-1');
      assert.ok(s, 'the stalled client is still connected');
      if (s.congested) {
        sawCongestion = true;
        peak = {
          bytes: Math.max(peak.bytes, s.pending.bytes),
          records: Math.max(peak.records, s.pending.records),
          coalescable: Math.max(peak.coalescable, s.pending.coalescable),
          buffered: Math.max(peak.buffered, s.bufferedAmount),
        };
      }
      await tick();
    }
    const lastSeq = source.lastSeq();
    // The last records: a step, so the stream ends on a record that can never be coalesced.
    scalarSeqs.push(source.append(stepRecord(++step)).seq);
    assert.ok(sawCongestion, 'the stalled client became congested');
    assertAtMost(peak.coalescable, layers.length + 1, `at most one spectra per layer + one layer_stats queued (saw ${peak.coalescable})`);
    assertBelow(peak.bytes, 2_500_000, `pending bytes bounded (saw ${peak.bytes}, spectra produced ${spectraBytes})`);
    assertAtMost(peak.buffered, highWaterBytes + (1 << 20) + 64 * 1024, `socket buffer bounded (saw ${peak.buffered})`);
    const stats = server.debugStats().clients.find((c) => c.id === 'ws-1');
    assert.ok(stats && stats.pending.coalescedAway > 0, `records coalesced away: ${JSON.stringify(stats?.pending)}`);

    (stalled.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    await waitUntil(`the stalled client to catch up to seq ${lastSeq + 1}`, () => stalled.records().at(-1)?.seq, { until: (seq) => seq === lastSeq + 1 });
    await waitUntil(`the healthy client to catch up to seq ${lastSeq + 1}`, () => healthy.records().at(-1)?.seq, { until: (seq) => seq === lastSeq + 1 });

    const got = stalled.records();
    for (let i = 1; i < got.length; i++) assertAbove(got[i].seq, got[i - 1].seq, 'strictly increasing');
    assert.deepEqual(
      got.filter((r) => r.kind === 'step').map((r) => r.seq),
      scalarSeqs,
      'every scalar record arrives',
    );
    for (const [layer, seq] of lastSpectra) {
      const last = got.filter((r) => r.kind === 'spectra' && r.layer === layer).at(-1);
      assert.equal(last?.seq, seq, `latest spectra of ${layer} delivered`);
    }
    const spectraGot = got.filter((r) => r.kind === 'spectra').length;
    const spectraMade = Math.round((TOTAL * 4) / 15);
    assertBelow(spectraGot, spectraMade, `spectra coalesced (${spectraGot} of ~${spectraMade})`);
    assert.deepEqual(
      healthy.records().filter((r) => r.kind === 'step').map((r) => r.seq),
      scalarSeqs,
    );
    t.diagnostic(
      `stalled client: peak pending ${peak.records} records / ${(peak.bytes / 1024).toFixed(0)} KiB (≤ ${peak.coalescable} spectra/layer_stats), peak socket buffer ${(peak.buffered / 1024).toFixed(0)} KiB; ${(spectraBytes / 1e6).toFixed(1)} MB of spectra produced, ${spectraGot} of ~${spectraMade} spectra delivered; healthy client got ${healthy.records().length} records`,
    );
    stalled.ws.close();
    healthy.ws.close();
  });

  test('a client whose scalar backlog passes the limit is closed with 1013', SLOW_TEST, async () => {
    const { server, source, logs } = await setup({ highWaterBytes: 64 * 1024, maxBacklogRecords: 1000 });
    const stalled = await Client.open(server.url);
    stalled.send({ type: 'subscribe', afterSeq: 0 });
    await stalled.next(['replayed']);
    const socket = (stalled.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    socket.pause();
    const random = rng(5);
    // Spectra fill the kernel buffers until the server sees congestion; then scalars pile up.
    for (let i = 0; i < 200 && !server.debugStats().clients[0]?.congested; i++) {
      for (let j = 0; j < 50; j++) source.append(spectraRecord(i, `l${j % 4}`, 200, random));
      await sleep(1);
    }
    assert.ok(server.debugStats().clients[0]?.congested, 'congested');
    for (let i = 0; i < 1500; i++) source.append(stepRecord(i));
    await waitUntil('the server to give up on the client', () => server.debugStats().clients[0], { until: (c) => c?.phase === 'closed' });
    assert.equal(server.debugStats().clients[0].pending.records, 0, 'its queue is freed at once');
    socket.resume();
    assert.equal(await stalled.closed(), 1013);
    assert.ok(logs.some((l) => /more than 1000 records waiting/.test(l)), logs.join('\n'));
  });
});

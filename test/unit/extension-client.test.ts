// The extension's one WebSocket client against the real trainer server: subscribe from the history's
// last seq, reconnect after the server goes away, and continue with no gaps and no duplicates.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { NewLogRecord } from '../../common/protocol.js';
import { RunLog } from '../../common/run-folder/log.js';
import { generateToken, startServer } from '../../trainer/server/server.js';
import { RunHistory } from '../../extension/history.js';
import { TrainerClient, type ConnectionState } from '../../extension/trainer-client.js';
import { SLOW_TEST, waitUntil } from '../helpers/wait.js';

const stepRecord = (step: number): NewLogRecord => ({ kind: 'step', step, loss: 1 / (step + 1), lr: 0.02, p: 0.1, stepMs: 5 });

describe('TrainerClient', () => {
  test('reconnects after the trainer restarts and resumes after the last seq it saw', SLOW_TEST, async () => {
    const log = new RunLog(join(mkdtempSync(join(tmpdir(), 'muonscope-ext-')), 'log.ndjson'));
    for (let i = 0; i < 20; i++) log.append(stepRecord(i));
    const token = generateToken();
    const serve = (port = 0) =>
      startServer({ token, port, runId: 'r', runDir: '/tmp/r', source: log, onCommand: async () => ({ step: log.lastSeq() }), log: () => {} });
    let server = await serve();
    const history = new RunHistory(10000);
    const states: ConnectionState[] = [];
    const subscribedAfter: number[] = [];
    const client = new TrainerClient(server.url, token, () => (subscribedAfter.push(history.lastSeq), history.lastSeq), {
      onHello: () => {},
      onRecords: (records) => history.add(records),
      onConnection: (s) => states.push(s),
      onLog: () => {},
    }, { backoffMs: [50] });
    try {
      client.start();
      await waitUntil('the replay of 20 records, live', () => [client.connectionState, history.lastSeq], { until: ([state, seq]) => state === 'live' && seq === 20 });
      log.append(stepRecord(20));
      await waitUntil('a live record (seq 21)', () => history.lastSeq, { until: (seq) => seq === 21 });
      const ack = await client.command({ kind: 'checkpoint' });
      assert.equal(ack.type, 'ack', 'commands are answered');

      const port = server.port;
      await server.close();
      await waitUntil('the drop to be noticed', () => client.connectionState, { until: (state) => state === 'offline' || state === 'connecting' });
      for (let i = 21; i < 30; i++) log.append(stepRecord(i));
      server = await serve(port);
      await waitUntil('the catch-up to seq 30 after reconnecting', () => history.lastSeq, { until: (seq) => seq === 30 });
      assert.deepEqual(history.records().map((r) => r.seq), Array.from({ length: 30 }, (_, i) => i + 1), 'every record once, in order');
      assert.equal(subscribedAfter[0], 0);
      assert.equal(subscribedAfter[subscribedAfter.length - 1], 21, 'the resubscribe asked for what came after seq 21');
      assert.ok(states.includes('offline'), 'the drop was reported');
    } finally {
      client.dispose();
      await server.close();
      log.close();
    }
  });

  test('a wrong token is reported once and not retried', SLOW_TEST, async () => {
    const log = new RunLog(join(mkdtempSync(join(tmpdir(), 'muonscope-ext-')), 'log.ndjson'));
    const server = await startServer({ token: generateToken(), runId: 'r', runDir: '/tmp/r', source: log, onCommand: async () => ({ step: 0 }), log: () => {} });
    // A reference client with the same backoff against a server that drops every upgrade: its retries mark
    // how long a retry of the refused client would take to show.
    const dropper = createServer();
    dropper.on('upgrade', (_req, socket) => socket.destroy());
    await new Promise<void>((r) => dropper.listen(0, '127.0.0.1', r));
    const transitions = (list: string[]) => (s: ConnectionState, d?: string) => list.push(d ? `${s}: ${d}` : s);
    const events = () => ({ onHello: () => {}, onRecords: () => {}, onLog: () => {} });
    const refusedStates: string[] = [];
    const droppedStates: string[] = [];
    const client = new TrainerClient(server.url, 'wrong', () => 0, { ...events(), onConnection: transitions(refusedStates) }, { backoffMs: [20] });
    const reference = new TrainerClient(`ws://127.0.0.1:${(dropper.address() as AddressInfo).port}`, 'any', () => 0, { ...events(), onConnection: transitions(droppedStates) }, { backoffMs: [20] });
    try {
      client.start();
      await waitUntil('the refusal', () => refusedStates, { until: (states) => states.some((d) => d.includes('wrong token')) });
      reference.start();
      await waitUntil('3 connection attempts of the reference client', () => droppedStates, { until: (states) => states.filter((d) => d === 'connecting').length >= 3 });
      assert.deepEqual(refusedStates.map((state) => state.split(':')[0]), ['connecting', 'offline'], `one attempt, one refusal, no retry: ${refusedStates.join(' | ')}`);
      assert.match(refusedStates[1], /HTTP 401: wrong token/);
      const reply = await client.command({ kind: 'pause' });
      assert.equal(reply.type, 'error', 'a command without a connection fails at once');
    } finally {
      client.dispose();
      reference.dispose();
      dropper.close();
      await server.close();
      log.close();
    }
  });
});

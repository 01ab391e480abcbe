// The extension's one WebSocket client against the real trainer server: subscribe from the history's
// last seq, reconnect after the server goes away, and continue with no gaps and no duplicates.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { NewLogRecord } from '../../common/protocol.js';
import { RunLog } from '../../common/run-folder/log.js';
import { generateToken, startServer } from '../../trainer/server/server.js';
import { RunHistory } from '../../extension/history.js';
import { TrainerClient, type ConnectionState } from '../../extension/trainer-client.js';

const stepRecord = (step: number): NewLogRecord => ({ kind: 'step', step, loss: 1 / (step + 1), lr: 0.02, p: 0.1, stepMs: 5 });

async function until(pred: () => boolean, what: string, ms = 10000): Promise<void> {
  const start = Date.now();
  while (!pred()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('TrainerClient', () => {
  test('reconnects after the trainer restarts and resumes after the last seq it saw', async () => {
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
      await until(() => client.connectionState === 'live' && history.lastSeq === 20, 'the replay');
      log.append(stepRecord(20));
      await until(() => history.lastSeq === 21, 'a live record');
      const ack = await client.command({ kind: 'checkpoint' });
      assert.equal(ack.type, 'ack', 'commands are answered');

      const port = server.port;
      await server.close();
      await until(() => client.connectionState === 'offline' || client.connectionState === 'connecting', 'the drop');
      for (let i = 21; i < 30; i++) log.append(stepRecord(i));
      server = await serve(port);
      await until(() => history.lastSeq === 30, 'the catch-up after reconnecting');
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

  test('a wrong token is reported once and not retried', async () => {
    const log = new RunLog(join(mkdtempSync(join(tmpdir(), 'muonscope-ext-')), 'log.ndjson'));
    const server = await startServer({ token: generateToken(), runId: 'r', runDir: '/tmp/r', source: log, onCommand: async () => ({ step: 0 }), log: () => {} });
    const details: string[] = [];
    const client = new TrainerClient(server.url, 'wrong', () => 0, {
      onHello: () => {},
      onRecords: () => {},
      onConnection: (s, d) => d && details.push(`${s}: ${d}`),
      onLog: () => {},
    }, { backoffMs: [20] });
    try {
      client.start();
      await until(() => details.some((d) => d.includes('wrong token')), 'the refusal');
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(details.filter((d) => d.includes('refused')).length, 1, `one refusal, no retries: ${details.join('; ')}`);
      const reply = await client.command({ kind: 'pause' });
      assert.equal(reply.type, 'error', 'a command without a connection fails at once');
    } finally {
      client.dispose();
      await server.close();
      log.close();
    }
  });
});

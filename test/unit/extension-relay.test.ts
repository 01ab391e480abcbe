// The extension's relay to dashboard panels: pacing (≤ 30 messages/s), merging of record batches,
// chunking of large replays, and nothing lost or reordered on the way.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ToDashboard } from '../../common/dashboard-messages.js';
import type { LogRecord } from '../../common/protocol.js';
import { PanelRelay, type RelayTimers } from '../../extension/relay.js';
import { assertAtMost } from '../helpers/bounds.js';

/** A manual clock: timers fire only when the test advances time. */
class FakeTimers implements RelayTimers {
  t = 0;
  private queue: { at: number; fn: () => void; id: number }[] = [];
  private nextId = 1;
  now = () => this.t;
  setTimeout = (fn: () => void, ms: number) => {
    const id = this.nextId++;
    this.queue.push({ at: this.t + ms, fn, id });
    return id;
  };
  clearTimeout = (h: unknown) => {
    this.queue = this.queue.filter((q) => q.id !== h);
  };
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      this.queue.sort((a, b) => a.at - b.at);
      const next = this.queue[0];
      if (!next || next.at > end) break;
      this.queue.shift();
      this.t = next.at;
      next.fn();
    }
    this.t = end;
  }
}

const step = (seq: number): LogRecord => ({ kind: 'step', seq, t: seq, step: seq, loss: 1 / seq, lr: 0.02, p: 0, stepMs: 1 });
const seqsOf = (posted: ToDashboard[], runId = 'a') =>
  posted.flatMap((m) => (m.type === 'records' && m.runId === runId ? m.records.map((r) => r.seq) : []));

describe('PanelRelay', () => {
  test('posts nothing synchronously and merges consecutive record batches of a run into one message', () => {
    const timers = new FakeTimers();
    const posted: ToDashboard[] = [];
    const relay = new PanelRelay((m) => posted.push(m), { timers });
    for (let i = 1; i <= 100; i++) relay.send({ type: 'records', runId: 'a', records: [step(i)] });
    assert.equal(posted.length, 0, 'nothing is posted before the first flush');
    timers.advance(0);
    assert.equal(posted.length, 1, 'one merged message');
    assert.deepEqual(seqsOf(posted), Array.from({ length: 100 }, (_, i) => i + 1));
  });

  test('never exceeds 30 messages in any second, and delivers every message in order', () => {
    const timers = new FakeTimers();
    const posted: { at: number; m: ToDashboard }[] = [];
    const relay = new PanelRelay((m) => posted.push({ at: timers.t, m }), { timers });
    // Alternating runs defeat merging: the worst case for the message rate.
    for (let i = 1; i <= 300; i++) {
      relay.send({ type: 'records', runId: i % 2 ? 'a' : 'b', records: [step(i)] });
      if (i % 10 === 0) timers.advance(7);
    }
    timers.advance(20_000);
    assert.equal(relay.pending, 0, 'the queue drains');
    for (const { at } of posted) {
      const inWindow = posted.filter((p) => p.at >= at && p.at < at + 1000).length;
      assertAtMost(inWindow, 30, `${inWindow} messages within one second starting at ${at} ms`);
    }
    const all = posted.map((p) => p.m);
    assert.deepEqual([...seqsOf(all, 'a'), ...seqsOf(all, 'b')].sort((x, y) => x - y), Array.from({ length: 300 }, (_, i) => i + 1));
    assert.deepEqual(seqsOf(all, 'a'), [...seqsOf(all, 'a')].sort((x, y) => x - y), 'run a in seq order');
  });

  test('splits a large replay into bounded chunks without losing records', () => {
    const timers = new FakeTimers();
    const posted: ToDashboard[] = [];
    const relay = new PanelRelay((m) => posted.push(m), { timers, maxRecordsPerMessage: 1000 });
    relay.send({ type: 'records', runId: 'a', records: Array.from({ length: 4500 }, (_, i) => step(i + 1)) });
    relay.send({ type: 'records', runId: 'a', records: [step(4501)] });
    timers.advance(10_000);
    assert.ok(posted.every((m) => m.type !== 'records' || m.records.length <= 1000), 'every chunk within the bound');
    assert.equal(posted.length, 5);
    assert.deepEqual(seqsOf(posted), Array.from({ length: 4501 }, (_, i) => i + 1));
  });

  test('keeps only the latest connection state of a run, and does not mutate the caller\'s arrays', () => {
    const timers = new FakeTimers();
    const posted: ToDashboard[] = [];
    const relay = new PanelRelay((m) => posted.push(m), { timers });
    const batch = [step(1)];
    relay.send({ type: 'records', runId: 'a', records: batch });
    relay.send({ type: 'records', runId: 'a', records: [step(2)] });
    relay.send({ type: 'connection', runId: 'a', state: 'connecting' });
    relay.send({ type: 'connection', runId: 'a', state: 'live' });
    timers.advance(0);
    assert.equal(batch.length, 1, 'the caller\'s array is untouched');
    assert.deepEqual(posted.map((m) => m.type), ['records', 'connection']);
    assert.equal(posted[1].type === 'connection' && posted[1].state, 'live');
  });

  test('clear drops what is queued; dispose stops everything', () => {
    const timers = new FakeTimers();
    const posted: ToDashboard[] = [];
    const relay = new PanelRelay((m) => posted.push(m), { timers });
    relay.send({ type: 'records', runId: 'a', records: [step(1)] });
    relay.clear();
    timers.advance(1000);
    assert.equal(posted.length, 0);
    relay.send({ type: 'runs', runs: [] });
    relay.dispose();
    relay.send({ type: 'runs', runs: [] });
    timers.advance(1000);
    assert.equal(posted.length, 0);
  });
});

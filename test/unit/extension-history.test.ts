// The extension's per-run history: replay bookkeeping (last seq, overlap dropped), the memory bound,
// the full replay from disk when trimmed, and the summary the views show.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LogRecord } from '../../common/protocol.js';
import { fullHistory, RunHistory } from '../../extension/history.js';
import { describeProgress, effectiveState, emptySummary, foldSummary } from '../../extension/run-summary.js';

const step = (seq: number, loss = 1 / seq): LogRecord => ({ kind: 'step', seq, t: seq, step: seq, loss, lr: 0.02, p: -0.25, stepMs: 1 });
const state = (seq: number, s: 'running' | 'paused' | 'finished'): LogRecord => ({ kind: 'state', seq, t: seq, step: seq, state: s, reason: '' });
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

describe('RunHistory', () => {
  test('a reconnect replay that overlaps what arrived before the drop adds nothing twice', () => {
    const h = new RunHistory(1000);
    assert.deepEqual(h.add(range(1, 10).map((s) => step(s))).map((r) => r.seq), range(1, 10));
    assert.equal(h.lastSeq, 10, 'the client resubscribes after seq 10');
    // The server replays from an older cursor (e.g. a frame was in flight when the socket dropped).
    const fresh = h.add(range(8, 15).map((s) => step(s)));
    assert.deepEqual(fresh.map((r) => r.seq), range(11, 15));
    assert.deepEqual(h.records().map((r) => r.seq), range(1, 15));
  });

  test('accepts gaps (coalesced spectra on a congested link) but never goes backwards', () => {
    const h = new RunHistory(1000);
    h.add([step(1), step(4), step(3), step(9)]);
    assert.deepEqual(h.records().map((r) => r.seq), [1, 4, 9]);
    assert.equal(h.lastSeq, 9);
  });

  test('the bound drops the oldest chart points but keeps the records that tell the run\'s story', () => {
    const h = new RunHistory(50);
    h.add([state(1, 'running'), ...range(2, 100).map((s) => step(s)), state(101, 'paused'), ...range(102, 200).map((s) => step(s))]);
    assert.equal(h.size, 50);
    assert.ok(h.trimmed, 'reports that it dropped records');
    const kinds = h.records().map((r) => r.kind);
    assert.equal(kinds.filter((k) => k === 'state').length, 2, 'both state records kept');
    assert.equal(h.records()[h.records().length - 1].seq, 200, 'the newest record is kept');
    assert.equal(h.lastSeq, 200);
  });

  test('a full replay of a trimmed history reads the log and appends what memory has beyond it', () => {
    const h = new RunHistory(10);
    h.add(range(1, 30).map((s) => step(s)));
    const disk = range(1, 25).map((s) => step(s));
    const all = fullHistory(h, () => disk);
    assert.deepEqual(all.map((r) => r.seq), range(1, 30), 'no gaps and no duplicates');
    assert.deepEqual(fullHistory(h, undefined).map((r) => r.seq), range(21, 30), 'memory only when there is no log here');
    const untrimmed = new RunHistory(100);
    untrimmed.add([step(1)]);
    let read = false;
    fullHistory(untrimmed, () => ((read = true), []));
    assert.equal(read, false, 'an untrimmed history does not touch the disk');
  });
});

describe('run summary', () => {
  const started: LogRecord = {
    kind: 'run_started', seq: 1, t: 0, step: 0, runId: 'r1', protocol: 1,
    config: { name: 'exp', optimizer: { type: 'dynmuon', mode: 'exact' } },
    backend: { chosen: 'wasm', skipped: [] }, kernels: { chosen: 'onnxruntime-cpu', skipped: [] },
    totalSteps: 300, task: { name: 'markov', lossFloor: null, lossFloorLabel: '' }, params: [],
  };

  test('folds state, step, loss, p, optimizer and backend, ignoring records already folded', () => {
    let s = foldSummary(emptySummary(), [started, state(2, 'running'), step(3, 0.5), step(4, 0.25)]);
    s = foldSummary(s, [step(3, 99)]);
    assert.equal(s.state, 'running');
    assert.equal(s.step, 4);
    assert.equal(s.loss, 0.25);
    assert.equal(s.p, -0.25);
    assert.equal(s.optimizer, 'dynmuon (exact)');
    assert.equal(s.backend, 'wasm');
    assert.equal(s.name, 'exp');
    assert.equal(describeProgress(s), 'step 4/300 · loss 0.25 · p -0.25');
  });

  test('names DynMuon exact\'s normalisation in the optimizer label', () => {
    const config = { name: 'exp', optimizer: { type: 'dynmuon', mode: 'exact', normalization: 'spectral' } };
    const s = foldSummary(emptySummary(), [{ ...started, config } as LogRecord]);
    assert.equal(s.optimizer, 'dynmuon (exact, spectral)');
  });

  test('counts the advisor\'s pending suggestions: added by suggestion records, removed by their outcome', () => {
    const suggestion = (seq: number, id: string) => ({ kind: 'suggestion', seq, t: 0, step: seq, id, rule: 'plateau', title: 't', change: { kind: 'set_lr', lr: 0.1 }, evidence: [], confidence: 0.3, expectedEffect: 'e' }) as LogRecord;
    const outcome = (seq: number, id: string) => ({ kind: 'suggestion_outcome', seq, t: 0, step: seq, id, outcome: 'applied', source: 'dashboard', reason: '' }) as LogRecord;
    let s = foldSummary(emptySummary(), [started, suggestion(2, 'a'), suggestion(3, 'b')]);
    assert.deepEqual(s.pendingSuggestions, ['a', 'b']);
    s = foldSummary(s, [outcome(4, 'a')]);
    assert.deepEqual(s.pendingSuggestions, ['b']);
  });

  test('a started run is running until a state record says otherwise', () => {
    assert.equal(foldSummary(emptySummary(), [started]).state, 'running');
    assert.equal(foldSummary(emptySummary(), [started, state(2, 'paused')]).state, 'paused');
  });

  test('a run that says it is running but has no live trainer is shown as crashed', () => {
    const s = foldSummary(emptySummary(), [started, state(2, 'running')]);
    assert.equal(effectiveState(s, false), 'crashed');
    assert.equal(effectiveState(s, true), 'running');
    assert.equal(effectiveState(foldSummary(s, [state(3, 'finished')]), false), 'finished');
  });
});

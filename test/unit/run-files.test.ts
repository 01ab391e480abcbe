// The run folder's files: the NDJSON log (seq, torn lines, replay windows), checkpoints (round trip,
// atomic writes, damaged files) and the run config (defaults, errors with JSON paths, the schema).
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { isMuonscopeError } from '../../common/errors.js';
import { decodeCheckpoint, encodeCheckpoint, latestCheckpoint, writeCheckpoint, type Checkpoint } from '../../trainer/run/checkpoint.js';
import { runConfigJsonSchema, validateRunConfig } from '../../trainer/run/config.js';
import { parseRunLog, readRunLog, RunLog } from '../../common/run-folder/log.js';
import type { NewLogRecord } from '../../common/protocol.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'muonscope-test-'));
const stepRecord = (step: number): NewLogRecord => ({ kind: 'step', step, loss: 1 / (step + 1), lr: 0.02, p: 0.1, stepMs: 5 });

describe('run log', () => {
  test('stamps dense seqs from 1, and reads back what it wrote', () => {
    const file = join(tmp(), 'log.ndjson');
    const log = new RunLog(file);
    for (let i = 0; i < 10; i++) log.append(stepRecord(i));
    log.close();
    const { records, skipped } = readRunLog(file);
    assert.deepEqual(records.map((r) => r.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.equal(skipped.length, 0);
    assert.equal((records[3] as { step: number }).step, 3);
  });

  test('refuses a record that breaks the protocol (NaN loss) and writes nothing', () => {
    const file = join(tmp(), 'log.ndjson');
    const log = new RunLog(file);
    log.append(stepRecord(0));
    assert.throws(() => log.append({ ...stepRecord(1), loss: NaN } as NewLogRecord), (e) => isMuonscopeError(e, 'INVALID_ARGUMENT') && /step record/.test(e.message));
    assert.equal(log.lastSeq(), 1);
    log.close();
    assert.equal(readRunLog(file).records.length, 1);
  });

  test('a torn last line (killed writer) is skipped on read and cut off when the log is continued', () => {
    const file = join(tmp(), 'log.ndjson');
    const log = new RunLog(file);
    for (let i = 0; i < 3; i++) log.append(stepRecord(i));
    log.close();
    appendFileSync(file, '{"seq":4,"t":1,"kind":"st');
    const parsed = readRunLog(file);
    assert.equal(parsed.records.length, 3);
    assert.match(parsed.skipped[0].reason, /torn/);
    const again = new RunLog(file);
    assert.equal(again.lastSeq(), 3);
    again.append(stepRecord(3));
    again.close();
    const after = readRunLog(file);
    assert.deepEqual(after.records.map((r) => r.seq), [1, 2, 3, 4]);
    assert.equal(after.skipped.length, 0);
  });

  test('replays from memory and, beyond the memory window, from the file, with no gaps', () => {
    const file = join(tmp(), 'log.ndjson');
    const log = new RunLog(file);
    const n = 25000;
    for (let i = 0; i < n; i++) log.append(stepRecord(i));
    for (const after of [0, 1, 4999, 24990]) {
      const got = log.readAfter(after, 500);
      assert.equal(got[0].seq, after + 1);
      assert.equal(got.length, Math.min(500, n - after));
      got.forEach((r, i) => assert.equal(r.seq, after + 1 + i));
    }
    assert.deepEqual(log.readAfter(n, 10), []);
    const seen: number[] = [];
    const unsubscribe = log.subscribe((r) => seen.push(r.seq));
    log.append(stepRecord(n));
    unsubscribe();
    log.append(stepRecord(n + 1));
    assert.deepEqual(seen, [n + 1]);
    log.close();
  });

  test('a damaged line in the middle is reported, and such a log is not continued', () => {
    const file = join(tmp(), 'log.ndjson');
    const lines = [1, 2, 3].map((seq) => JSON.stringify({ ...stepRecord(seq), seq, t: 1 }));
    lines[1] = '{not json';
    writeFileSync(file, lines.join('\n') + '\n');
    const parsed = parseRunLog(readFileSync(file));
    assert.deepEqual(parsed.records.map((r) => r.seq), [1, 3]);
    assert.deepEqual(parsed.skipped, [{ line: 2, reason: 'not valid JSON' }]);
    assert.throws(() => new RunLog(file), (e) => isMuonscopeError(e, 'INVALID_STATE') && /gaps/.test(e.message));
  });
});

describe('checkpoints', () => {
  const checkpoint = (step: number): Checkpoint => ({
    runId: 'r1',
    step,
    reason: 'test',
    logSeq: 42,
    extra: { diagnostics: { every: 25 } },
    weights: { 'a.weight': { shape: [2, 3], values: Float32Array.of(1, -2, 3.5, 1e-30, -0, 7) }, 'a.bias': { shape: [3], values: Float32Array.of(0.1, 0.2, 0.3) } },
    optimizer: { kind: 'adamw', step: 3, hyperparameters: { lr: 0.001 }, params: { 'a.bias': { shape: [3], buffers: { expAvg: Float32Array.of(1, 2, 3) } } } },
  });

  test('encode → decode is bit-exact', () => {
    const c = checkpoint(7);
    const back = decodeCheckpoint(encodeCheckpoint(c));
    assert.deepEqual(back, c);
    assert.ok(Object.is(back.weights['a.weight'].values[4], -0), `−0 survives: got ${Object.is(back.weights['a.weight'].values[4], 0) ? '+0' : back.weights['a.weight'].values[4]}`);
  });

  test('writes atomically (no temp file left) and the newest readable checkpoint wins over a damaged one', () => {
    const dir = tmp();
    writeCheckpoint(dir, checkpoint(100));
    const newest = writeCheckpoint(dir, checkpoint(200));
    assert.deepEqual(readdirSync(dir).sort(), ['step-00000100.ckpt', 'step-00000200.ckpt']);
    writeFileSync(newest, readFileSync(newest).subarray(0, 50)); // torn by something other than us
    const latest = latestCheckpoint(dir)!;
    assert.equal(latest.checkpoint.step, 100);
    assert.match(latest.skipped[0], /step-00000200\.ckpt.*unusable/);
  });

  test('a file that is not a checkpoint is refused clearly', () => {
    assert.throws(() => decodeCheckpoint(new TextEncoder().encode('hello world, not a checkpoint'), 'x.ckpt'), (e) => isMuonscopeError(e, 'INVALID_STATE') && /x\.ckpt.*not a Muonscope checkpoint/.test(e.message));
  });
});

describe('run config', () => {
  test('an empty config is the documented default: tiny transformer, Markov source, DynMuon exact with the logistic schedule', () => {
    const r = validateRunConfig({});
    assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
    assert.equal(r.config.model.type, 'transformer');
    assert.equal(r.config.task.type, 'markov');
    assert.deepEqual(r.config.optimizer.type === 'dynmuon' && [r.config.optimizer.mode, r.config.optimizer.schedule.type], ['exact', 'logistic']);
  });

  test('reports every problem with its JSON path and a hint, and nothing else', () => {
    const r = validateRunConfig({ steps: 0, optimizer: { type: 'dynmuon', lr: -1, typo: 1 }, diagnostics: { every: 'often' } });
    assert.ok(!r.ok, 'the config is refused');
    const paths = r.issues.map((i) => i.path).sort();
    assert.deepEqual(paths, ['$.diagnostics.every', '$.optimizer.lr', '$.optimizer.typo', '$.steps']);
    assert.deepEqual(r.issues.filter((i) => i.message.length === 0), [], 'issues without a message');
    assert.match(r.issues.find((i) => i.path === '$.optimizer.typo')!.hint!, /spelling/);
  });

  test('unknown types, incompatible model and task, bad schedules and bad regexes are named precisely', () => {
    const bad = (raw: unknown) => {
      const r = validateRunConfig(raw);
      assert.ok(!r.ok, 'the config is refused');
      return r.issues;
    };
    assert.deepEqual(bad({ optimizer: { type: 'sgd' } }).map((i) => i.path), ['$.optimizer.type']);
    assert.match(bad({ model: { type: 'mlp' } })[0].message, /mlp model cannot train on task "markov"/);
    assert.match(bad({ optimizer: { type: 'dynmuon', schedule: { type: 'constant', p: 3 } } })[0].message, /outside \[-1, 1\]/);
    assert.equal(bad({ routing: [{ pattern: '(', optimizer: 'adamw' }] })[0].path, '$.routing[0].pattern');
    assert.equal(bad([])[0].path, '$');
  });

  test('the shipped JSON Schema is the validator\'s own definition', () => {
    const schema = runConfigJsonSchema() as { properties: Record<string, { default?: unknown }>; additionalProperties: boolean };
    assert.equal(schema.additionalProperties, false);
    assert.equal(schema.properties.steps.default, 1500);
    assert.ok(JSON.stringify(schema).includes('"logistic"'), 'schedule types are in the schema');
    assert.equal((schema as { required?: string[] }).required, undefined, 'fields with defaults are not required of the file');
    const optimizer = (schema.properties.optimizer as unknown as { anyOf: { required?: string[] }[] }).anyOf;
    assert.deepEqual(optimizer.map((o) => o.required), [['type'], ['type'], ['type']], 'only the discriminator is required');
  });
});

test('a schedule given in the config is kept as given (defaults are not merged into it)', () => {
  const r = validateRunConfig({ optimizer: { type: 'dynmuon', schedule: { type: 'constant', p: -0.25 } } });
  assert.ok(r.ok, 'valid');
  assert.deepEqual(r.config.optimizer.type === 'dynmuon' && r.config.optimizer.schedule, { type: 'constant', p: -0.25 });
});

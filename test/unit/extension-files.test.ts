// The extension's file-facing pure parts: run discovery in run folders, the New Run Config starter,
// CSV/JSON export, and the trainer's listening line.
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { LogRecord } from '../../common/protocol.js';
import { LogTail } from '../../common/run-folder/log-tail.js';
import { validateRunConfig } from '../../trainer/run/config.js';
import { starterConfig, stripLineComments } from '../../extension/config-starter.js';
import { CSV_COLUMNS, recordsToCsv, recordsToJson } from '../../extension/export.js';
import { findRunDirs, liveTrainerInfo, RunScanner } from '../../extension/run-discovery.js';
import { parseListeningLine } from '../../extension/trainer-process.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'muonscope-ext-'));
const step = (seq: number, s: number, loss: number): LogRecord => ({ kind: 'step', seq, t: 1000 + seq, step: s, loss, lr: 0.02, p: 0.25, stepMs: 3 });
const lines = (records: LogRecord[]) => records.map((r) => JSON.stringify(r)).join('\n') + '\n';

function makeRun(root: string, name: string, records: LogRecord[]): string {
  const dir = join(root, name);
  mkdirSync(join(dir, 'checkpoints'), { recursive: true });
  writeFileSync(join(dir, 'config.json'), '{}\n');
  writeFileSync(join(dir, 'log.ndjson'), lines(records));
  return dir;
}

describe('run discovery', () => {
  test('finds run folders under a root (and a root that is itself a run), ignoring other folders', async () => {
    const root = tmp();
    const a = makeRun(root, 'a-20250101-000000', [step(1, 1, 0.5)]);
    const b = makeRun(root, 'b-20250101-000001', [step(1, 1, 0.5)]);
    mkdirSync(join(root, 'not-a-run'));
    writeFileSync(join(root, 'stray.txt'), '');
    assert.deepEqual(await findRunDirs(root), [a, b]);
    assert.deepEqual(await findRunDirs(a), [a]);
    assert.deepEqual(await findRunDirs(join(root, 'missing')), []);
  });

  test('summarises each run from its log, tolerates a torn last line, and reads only the bytes appended since', async () => {
    const root = tmp();
    const dir = makeRun(root, 'r', [
      { kind: 'state', seq: 1, t: 1, step: 0, state: 'running', reason: '' },
      step(2, 1, 0.5),
      step(3, 2, 0.25),
    ]);
    appendFileSync(join(dir, 'log.ndjson'), '{"kind":"step","se'); // the writer is mid-line
    const scanner = new RunScanner(() => false);
    const [run] = await scanner.scan([root]);
    assert.equal(run.summary?.step, 2);
    assert.equal(run.summary?.loss, 0.25);
    assert.equal(run.summary?.state, 'running', 'the log says running; the views call it crashed when no trainer is alive');
    assert.equal(run.trainer, undefined);
    // The rest of the torn line arrives, then another record: both are read, from where the last read stopped.
    appendFileSync(join(dir, 'log.ndjson'), `q":4,"t":5,"step":3,"loss":0.2,"lr":0.02,"p":0.25,"stepMs":3}\n` + lines([step(5, 4, 0.125)]));
    const [grown] = await scanner.scan([root]);
    assert.equal(grown.summary?.loss, 0.125, 'a grown log is folded');
    assert.equal(grown.summary?.lastSeq, 5, `records 4 and 5 are both folded (lastSeq ${grown.summary?.lastSeq})`);
    assert.deepEqual((await scanner.scan([root, root])).length, 1, 'a folder listed twice is one run');
  });

  test('a log that is replaced or shrinks is read again from its start', async () => {
    const root = tmp();
    const dir = makeRun(root, 'r', [step(1, 1, 0.5), step(2, 2, 0.25)]);
    const scanner = new RunScanner(() => false);
    assert.equal((await scanner.scan([root]))[0].summary?.loss, 0.25);
    writeFileSync(join(dir, 'log.ndjson'), lines([step(1, 1, 0.75)]));
    assert.equal((await scanner.scan([root]))[0].summary?.loss, 0.75, 'the shorter log replaces what was folded');
  });

  test('a run the extension already streams is listed but its log is not read', async () => {
    const root = tmp();
    const dir = makeRun(root, 'r', [step(1, 1, 0.5)]);
    const scanner = new RunScanner(() => false);
    const [run] = await scanner.scan([root], (d) => d === dir);
    assert.equal(run.runDir, dir);
    assert.equal(run.summary, undefined, 'no summary: the session folds the same records from the socket');
  });

  test('trainer.json counts only while its process is alive', async () => {
    const dir = makeRun(tmp(), 'r', [step(1, 1, 0.5)]);
    writeFileSync(join(dir, 'trainer.json'), JSON.stringify({ pid: 4242, url: 'ws://127.0.0.1:1', token: 't' }));
    assert.deepEqual(await liveTrainerInfo(dir, () => true), { pid: 4242, url: 'ws://127.0.0.1:1', token: 't' });
    assert.equal(await liveTrainerInfo(dir, () => false), undefined, 'a stale file after a crash is ignored');
    writeFileSync(join(dir, 'trainer.json'), '{not json');
    assert.equal(await liveTrainerInfo(dir, () => true), undefined);
  });
});

describe('log tail', () => {
  test('reads complete lines only, and each byte once', async () => {
    const dir = makeRun(tmp(), 'r', [step(1, 1, 0.5)]);
    const tail = new LogTail(join(dir, 'log.ndjson'));
    assert.deepEqual((await tail.read()).records.map((r) => r.seq), [1]);
    assert.deepEqual((await tail.read()).records, [], 'nothing new');
    const next = JSON.stringify(step(2, 2, 0.25));
    appendFileSync(join(dir, 'log.ndjson'), next.slice(0, 10));
    assert.deepEqual((await tail.read()).records, [], 'half a line waits for its newline');
    appendFileSync(join(dir, 'log.ndjson'), next.slice(10) + '\n');
    assert.deepEqual((await tail.read()).records.map((r) => r.seq), [2]);
    assert.equal(tail.bytesRead, statSync(join(dir, 'log.ndjson')).size);
  });

  test('a missing file reads as nothing', async () => {
    assert.deepEqual(await new LogTail(join(tmp(), 'none.ndjson')).read(), { records: [], restarted: false });
  });
});

describe('config starter', () => {
  for (const kind of ['mlp', 'transformer'] as const) {
    test(`the ${kind} starter is commented and valid for the trainer once comments are stripped`, () => {
      const text = starterConfig(kind, `my ${kind}`, 10);
      assert.ok(/^\/\/ /m.test(text), 'has comments');
      const result = validateRunConfig(JSON.parse(stripLineComments(text)));
      assert.ok(result.ok, `valid: ${JSON.stringify(!result.ok && result.issues)}`);
      assert.equal(result.ok && result.config.name, `my ${kind}`);
      assert.equal(result.ok && result.config.diagnostics.every, 10, 'uses the diagnostics cadence setting');
      assert.equal(result.ok && result.config.model.type, kind);
    });
  }
});

describe('export', () => {
  const records: LogRecord[] = [
    { kind: 'state', seq: 1, t: 1, step: 0, state: 'running', reason: 'go, "now"' },
    step(2, 1, 0.5),
    step(3, 2, 0.25),
    { kind: 'eval', seq: 4, t: 4, step: 2, valLoss: 0.3 },
    { kind: 'step', seq: 5, t: 1005, step: 3, loss: 0.125, lr: 0.02, p: null, stepMs: 3 },
  ];

  test('CSV: a header and one row per step, with the eval at that step joined in', () => {
    const csv = recordsToCsv(records).trimEnd().split('\n');
    assert.equal(csv[0], CSV_COLUMNS.join(','));
    assert.equal(csv.length, 4);
    assert.deepEqual(csv[2].split(',').slice(0, 5), ['2', '0.25', '0.3', '0.02', '0.25']);
    assert.deepEqual(csv[3].split(',').slice(0, 5), ['3', '0.125', '', '0.02', ''], 'missing values are empty cells');
  });

  test('JSON: every record, as logged', () => {
    assert.deepEqual(JSON.parse(recordsToJson(records)), records);
  });
});

describe('trainer listening line', () => {
  test('parses the first stdout line and nothing else', () => {
    assert.deepEqual(parseListeningLine('{"event":"listening","url":"ws://127.0.0.1:5","token":"abc","runDir":"/r"}'), { url: 'ws://127.0.0.1:5', token: 'abc', runDir: '/r' });
    assert.equal(parseListeningLine('step 1/300  loss 0.07'), undefined);
    assert.equal(parseListeningLine('{"event":"listening","url":5}'), undefined);
  });
});

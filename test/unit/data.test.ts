// trainer/data: the Markov source against a numpy reference (test/fixtures/generate_markov.py) and
// simulation, and the text-file task's vocabulary, split, determinism and errors.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { MarkovSource, TextFileTask, type MarkovConfig } from '../../trainer/data/index';
import { mulberry32 } from '../../trainer/data/random';
import { isMuonscopeError } from '../../common/errors';
import { assertAbove, assertBelow } from '../helpers/bounds.js';
import { FIXTURES_DIR, loadIndex } from '../helpers/fixtures';

interface MarkovIndex {
  table: string;
  vocabSize: number;
  seed: number;
  stationary: number[];
  entropyRate: number;
  firstStepEntropy: number;
  lossFloor: Record<string, number>;
}

const markov = (config: Partial<MarkovConfig> = {}) =>
  new MarkovSource({ vocabSize: 32, contextLength: 64, batchSize: 16, validationSize: 8, seed: 0, ...config });

/** π·Q where Q is the pair chain (a, b) → (b, c). */
function pairStep(m: MarkovSource): Float64Array {
  const V = m.vocabSize;
  const out = new Float64Array(V * V);
  for (let a = 0; a < V; a++) for (let b = 0; b < V; b++) for (let c = 0; c < V; c++) out[b * V + c] += m.stationary[a * V + b] * m.transitions[(a * V + b) * V + c];
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

describe('MarkovSource', () => {
  test('transition rows are distributions, well below uniform entropy', () => {
    for (const seed of [0, 1, 7]) {
      const m = markov({ seed });
      const V = m.vocabSize;
      for (let s = 0; s < V * V; s++) {
        let sum = 0;
        for (let c = 0; c < V; c++) {
          const p = m.transitions[s * V + c];
          assert.ok(p > 0 && p < 1, `seed ${seed}: P(${c} | ${s}) = ${p}, not in (0, 1)`);
          sum += p;
        }
        assertBelow(Math.abs(sum - 1), 1e-12, `row ${s} sums to ${sum}`);
      }
      assertBelow(m.entropyRate, 0.7 * Math.log(V), `H* ${m.entropyRate} vs log V ${Math.log(V)}`);
    }
  });

  test('the stationary distribution is stationary (π·Q = π within 1e-12) and sums to 1', () => {
    for (const vocabSize of [8, 32, 64]) {
      const m = markov({ vocabSize, seed: 5 });
      assertBelow(maxAbsDiff(pairStep(m), m.stationary), 1e-12, `V=${vocabSize}: max |π·Q − π|`);
      assertBelow(Math.abs(m.stationary.reduce((a, b) => a + b, 0) - 1), 1e-12, `V=${vocabSize}: |Σπ − 1|`);
    }
  });

  test('H*, H(X1|X0), the window floor and π match numpy (linear solve) within 1e-12', () => {
    const ref = loadIndex<MarkovIndex>('markov');
    const table = JSON.parse(readFileSync(join(FIXTURES_DIR, 'markov', ref.table), 'utf8')) as { transitions: number[] };
    for (const T of Object.keys(ref.lossFloor).map(Number)) {
      const m = markov({ vocabSize: ref.vocabSize, seed: ref.seed, contextLength: T });
      // The reference was computed from this exact table: the generator must not have drifted.
      assert.deepEqual(Array.from(m.transitions), table.transitions);
      assertBelow(maxAbsDiff(m.stationary, ref.stationary), 1e-12, `T=${T}: max |π − numpy π|`);
      assertBelow(Math.abs(m.entropyRate - ref.entropyRate), 1e-12, `T=${T}: H* ${m.entropyRate} vs numpy ${ref.entropyRate}, abs.`);
      assertBelow(Math.abs(m.firstStepEntropy - ref.firstStepEntropy), 1e-12, `T=${T}: H(X1|X0) ${m.firstStepEntropy} vs numpy ${ref.firstStepEntropy}, abs.`);
      assertBelow(Math.abs(m.lossFloor - ref.lossFloor[String(T)]), 1e-12, `T=${T}`);
    }
  });

  test('H* matches the plug-in conditional entropy of 200k simulated characters within 1% (V = 8)', () => {
    const m = markov({ vocabSize: 8, seed: 3 });
    const V = 8;
    const n = 200_000;
    const x = m.sample(n, mulberry32(12345));
    const counts = new Float64Array(V * V * V);
    for (let t = 2; t < n; t++) counts[(x[t - 2] * V + x[t - 1]) * V + x[t]]++;
    let h = 0;
    for (let s = 0; s < V * V; s++) {
      let row = 0;
      for (let c = 0; c < V; c++) row += counts[s * V + c];
      for (let c = 0; c < V; c++) if (counts[s * V + c] > 0) h -= (counts[s * V + c] / (n - 2)) * Math.log(counts[s * V + c] / row);
    }
    assertBelow(Math.abs(h / m.entropyRate - 1), 0.01, `plug-in ${h} vs H* ${m.entropyRate}`);
  });

  test('H* matches the mean log-loss of the true model along 200k simulated characters within 1% (V = 32)', () => {
    // With 32³ cells the plug-in estimate is biased by ~(cells)/(2n); the true model's log-loss along a
    // stationary path is an unbiased estimate of H* (ergodic theorem), with ~0.2% standard error here.
    const m = markov({ vocabSize: 32, seed: 11 });
    const V = 32;
    const n = 200_000;
    const x = m.sample(n, mulberry32(999));
    let nll = 0;
    for (let t = 2; t < n; t++) nll -= Math.log(m.transitions[(x[t - 2] * V + x[t - 1]) * V + x[t]]);
    const estimate = nll / (n - 2);
    assertBelow(Math.abs(estimate / m.entropyRate - 1), 0.01, `log-loss ${estimate} vs H* ${m.entropyRate}`);
  });

  test('the window floor lies between H* and H(X1|X0) and tends to H* with T', () => {
    const short = markov({ contextLength: 4 });
    const long = markov({ contextLength: 128 });
    assertAbove(short.lossFloor, long.lossFloor, 'the T = 4 floor above the T = 128 floor');
    assertAbove(long.lossFloor, long.entropyRate, 'the T = 128 floor above H*');
    assertAbove(short.firstStepEntropy, short.entropyRate, 'H(X1|X0) above H*');
  });

  test('batches are [B, T+1] ids reproducible from (seed, index); validation is fixed', () => {
    const a = markov({ seed: 4 });
    const b = markov({ seed: 4 });
    assert.equal(a.batch(7).length, 16 * 65);
    assert.deepEqual(a.batch(7), b.batch(7));
    assert.notDeepEqual(a.batch(7), a.batch(8));
    assert.notDeepEqual(a.batch(7), markov({ seed: 5 }).batch(7));
    assert.deepEqual(a.validation, b.validation);
    assert.equal(a.validation.length, 8 * 65);
    assert.deepEqual(Array.from(a.batch(3)).filter((id) => !(id >= 0 && id < 32)), [], 'ids outside [0, 32)');
  });

  test('decode maps ids to distinct printable characters', () => {
    const m = markov({ vocabSize: 128 });
    assert.equal(new Set(m.alphabet).size, 128);
    assert.deepEqual(m.alphabet.filter((c) => !/^\P{C}$/u.test(c)), [], 'characters that are not one printable code point');
    assert.equal(m.decode([0, 1, 26]), 'ab ');
  });

  test('invalid settings are refused, naming the field', () => {
    for (const [field, value] of [
      ['vocabSize', 1],
      ['vocabSize', 10_000],
      ['contextLength', 0],
      ['batchSize', 2.5],
      ['seed', -1],
    ] as const) {
      assert.throws(
        () => markov({ [field]: value }),
        (e: unknown) => isMuonscopeError(e, 'INVALID_ARGUMENT') && e.details.field === field && e.message.includes(field),
      );
    }
  });
});

const TEXT = join(FIXTURES_DIR, 'text');
const textTask = (file: string, contextLength = 16, seed = 0) => new TextFileTask({ path: join(TEXT, file), contextLength, batchSize: 8, validationSize: 4, seed });

describe('TextFileTask', () => {
  const sample = readFileSync(join(TEXT, 'sample.txt'), 'utf8');
  const chars = Array.from(sample);

  test('vocabulary = sorted unique code points; tokens decode back to the text', () => {
    const t = textTask('sample.txt');
    const expected = [...new Set(chars)].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
    assert.deepEqual(t.alphabet, expected);
    assert.equal(t.vocabSize, expected.length);
    assert.deepEqual(['🙂', '日'].filter((c) => !t.alphabet.includes(c)), [], `characters outside the BMP are one token each: ${t.alphabet.join('')}`);
    assert.equal(t.decode(t.tokens), sample);
    assert.equal(t.lossFloor, null);
  });

  test('the last tenth is validation; training windows never reach into it', () => {
    const t = textTask('sample.txt');
    const n = chars.length;
    assert.equal(t.trainEnd, n - Math.ceil(n / 10));
    const trainText = chars.slice(0, t.trainEnd).join('');
    const heldOut = chars.slice(t.trainEnd).join('');
    for (let k = 0; k < 50; k++) {
      const batch = t.batch(k);
      for (let r = 0; r < 8; r++) {
        const window = t.decode(batch.subarray(r * 17, (r + 1) * 17));
        assert.ok(trainText.includes(window), `batch ${k} row ${r} is not in the training text: ${JSON.stringify(window)}`);
      }
    }
    for (let r = 0; r < 4; r++) {
      const window = t.decode(t.validation.subarray(r * 17, (r + 1) * 17));
      assert.ok(heldOut.includes(window), `validation row ${r} is not in the held-out text: ${JSON.stringify(window)}`);
    }
    // The first and last validation windows sit at the ends of the held-out text.
    assert.equal(t.decode(t.validation.subarray(0, 17)), heldOut.slice(0, 17), 'the first validation window');
    assert.equal(t.decode(t.validation.subarray(3 * 17)), Array.from(heldOut).slice(-17).join(''), 'the last validation window');
  });

  test('validation keeps at least one window when a tenth is shorter than T+1', () => {
    const t = textTask('sample.txt', 100);
    assert.equal(t.trainEnd, chars.length - 101);
  });

  test('batches are reproducible from (seed, index)', () => {
    assert.deepEqual(textTask('sample.txt').batch(3), textTask('sample.txt').batch(3));
    assert.notDeepEqual(textTask('sample.txt').batch(3), textTask('sample.txt').batch(4));
    assert.notDeepEqual(textTask('sample.txt').batch(3), textTask('sample.txt', 16, 1).batch(3));
  });

  const refused = (file: string, pattern: RegExp, extra: (e: { details: Record<string, unknown> }) => boolean = () => true, contextLength = 16) =>
    assert.throws(
      () => textTask(file, contextLength),
      (e: unknown) => isMuonscopeError(e, 'INVALID_ARGUMENT') && pattern.test(e.message) && e.message.includes(file) && extra(e),
    );

  test('a missing file is refused with its path', () => refused('no-such-file.txt', /cannot read \(no such file\)/));
  test('an empty file is refused', () => refused('empty.txt', /is empty/));
  test('invalid UTF-8 is refused with the byte offset', () => {
    refused('invalid-utf8.txt', /not valid UTF-8.*byte offset 6\b/, (e) => e.details.byteOffset === 6);
    refused('truncated-utf8.txt', /not valid UTF-8.*byte offset 3\b/, (e) => e.details.byteOffset === 3);
  });
  test('text shorter than two windows is refused', () => refused('short.txt', /10 characters; at least 34/));

  test('more distinct characters than the limit are refused', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'muonscope-text-')), 'many.txt');
    writeFileSync(path, Array.from({ length: 600 }, (_, i) => String.fromCodePoint(0x4e00 + i)).join('').repeat(2));
    assert.throws(
      () => new TextFileTask({ path, contextLength: 16, batchSize: 2, validationSize: 1, seed: 0 }),
      (e: unknown) => isMuonscopeError(e, 'INVALID_ARGUMENT') && /600 distinct characters; at most 512/.test(e.message),
    );
  });
});

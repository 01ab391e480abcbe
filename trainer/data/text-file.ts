/**
 * The user's own text, character-level: the vocabulary is the sorted set of code points in the file,
 * the last tenth (at least one window) is held out for validation, and training batches are random
 * windows of T+1 characters from the rest, batch k depending only on (seed, k). The best possible loss
 * of real text is unknown, so there is no floor.
 */
import { readFileSync } from 'node:fs';
import { MuonscopeError } from '../../common/errors.js';
import type { TokenTask } from './index.js';
import { mulberry32 } from './random.js';

export interface TextFileConfig {
  path: string;
  /** T: predictions per window; each row of a batch holds T+1 tokens. */
  contextLength: number;
  batchSize: number;
  /** Windows in the fixed validation set (evenly spaced over the held-out text). */
  validationSize: number;
  seed: number;
}

/** The embedding and output head grow with the vocabulary; beyond this the file is not "characters". */
export const MAX_TEXT_VOCAB = 512;

const STREAM_STRIDE = 0x9e3779b1;

function invalidArgument(message: string, details: Record<string, unknown>): MuonscopeError {
  return new MuonscopeError('INVALID_ARGUMENT', message, details);
}

function readBytes(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
    throw invalidArgument(`text file ${path}: cannot read (${why})`, { path, code });
  }
}

/**
 * The offset of the first byte at which `bytes` stops being valid UTF-8. A streaming decoder accepts a
 * prefix that ends inside a character, so "this prefix decodes" is monotone in the prefix length and
 * a binary search finds the first bad byte.
 */
function firstInvalidByte(bytes: Uint8Array): number {
  const prefixValid = (n: number) => {
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, n), { stream: true });
      return true;
    } catch {
      return false;
    }
  };
  if (prefixValid(bytes.length)) {
    // Only the end is wrong: the last character is cut short. Report where it starts.
    let start = bytes.length - 1;
    while (start > 0 && (bytes[start] & 0xc0) === 0x80) start--;
    return start;
  }
  let lo = 0; // longest prefix known valid
  let hi = bytes.length; // shortest prefix known invalid
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (prefixValid(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

function decodeUtf8(bytes: Uint8Array, path: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    const offset = firstInvalidByte(bytes);
    throw invalidArgument(`text file ${path}: not valid UTF-8 (invalid byte sequence at byte offset ${offset})`, { path, byteOffset: offset });
  }
}

export class TextFileTask implements TokenTask {
  /** The characters, sorted by code point; token id = index. */
  readonly alphabet: readonly string[];
  readonly tokens: Int32Array;
  /** Tokens [0, trainEnd) are for training, [trainEnd, length) for validation. */
  readonly trainEnd: number;
  /** Fixed validation windows, [validationSize, T+1] row-major. */
  readonly validation: Int32Array;
  /** Real text has no known floor. */
  readonly lossFloor = null;

  constructor(readonly config: TextFileConfig) {
    const { path, contextLength: T } = config;
    for (const field of ['contextLength', 'batchSize', 'validationSize'] as const) {
      if (!Number.isInteger(config[field]) || config[field] < 1) {
        throw invalidArgument(`text task: ${field} must be a positive integer, got ${JSON.stringify(config[field])}`, { field, value: config[field] });
      }
    }
    const bytes = readBytes(path);
    if (bytes.length === 0) throw invalidArgument(`text file ${path} is empty`, { path });
    const chars = Array.from(decodeUtf8(bytes, path));
    const minimum = 2 * (T + 1);
    if (chars.length < minimum) {
      throw invalidArgument(
        `text file ${path} has ${chars.length} characters; at least ${minimum} (two windows of contextLength + 1 = ${T + 1}) are needed for a training and a validation window`,
        { path, characters: chars.length, minimum },
      );
    }
    this.alphabet = [...new Set(chars)].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
    if (this.alphabet.length > MAX_TEXT_VOCAB) {
      throw invalidArgument(`text file ${path} has ${this.alphabet.length} distinct characters; at most ${MAX_TEXT_VOCAB} are supported`, {
        path,
        distinct: this.alphabet.length,
        limit: MAX_TEXT_VOCAB,
      });
    }
    const id = new Map(this.alphabet.map((c, i) => [c, i]));
    this.tokens = Int32Array.from(chars, (c) => id.get(c)!);
    this.trainEnd = chars.length - Math.max(Math.ceil(chars.length / 10), T + 1);
    this.validation = this.validationWindows();
  }

  get vocabSize(): number {
    return this.alphabet.length;
  }

  get contextLength(): number {
    return this.config.contextLength;
  }

  get batchSize(): number {
    return this.config.batchSize;
  }

  /** Training batch `index`: random windows [batchSize, T+1] from the training text, from (seed, index). */
  batch(index: number): Int32Array {
    const T1 = this.config.contextLength + 1;
    const rng = mulberry32((this.config.seed + Math.imul(index + 1, STREAM_STRIDE)) >>> 0);
    const starts = this.trainEnd - T1 + 1;
    const out = new Int32Array(this.config.batchSize * T1);
    for (let i = 0; i < this.config.batchSize; i++) {
      const start = Math.floor(rng() * starts);
      out.set(this.tokens.subarray(start, start + T1), i * T1);
    }
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    let text = '';
    for (let i = 0; i < ids.length; i++) text += this.alphabet[ids[i]];
    return text;
  }

  /** Evenly spaced windows over the held-out tail, so validation covers it without randomness. */
  private validationWindows(): Int32Array {
    const { validationSize: n, contextLength } = this.config;
    const T1 = contextLength + 1;
    const last = this.tokens.length - T1;
    const out = new Int32Array(n * T1);
    for (let i = 0; i < n; i++) {
      const start = this.trainEnd + (n === 1 ? 0 : Math.round((i * (last - this.trainEnd)) / (n - 1)));
      out.set(this.tokens.subarray(start, start + T1), i * T1);
    }
    return out;
  }
}

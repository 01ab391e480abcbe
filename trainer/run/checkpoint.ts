/**
 * Checkpoints: model weights, optimizer state (with its schedule history) and where the data stream is,
 * in one binary file written atomically (temp file, fsync, rename, fsync of the folder), so a crash at
 * any moment leaves either the previous checkpoint or the new one, never a torn file. The data streams
 * are pure functions of (seed, batch index), so the step is the whole data cursor.
 *
 * Layout: "MSCK" | u32 LE header length | header JSON | zero padding to 4 | weights (float32 LE) | optimizer state.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { MuonscopeError } from '../../common/errors.js';
import { decodeState, encodeState } from '../optim/state.js';
import type { OptimizerState } from '../optim/types.js';

const MAGIC = 'MSCK';
const VERSION = 1;

export interface Checkpoint {
  runId: string;
  /** Steps completed: training resumes at this step index, which is also the next batch index. */
  step: number;
  reason: string;
  weights: Record<string, { shape: number[]; values: Float32Array }>;
  optimizer: OptimizerState;
  /** The run log's last seq when this was written (a resumed run appends after it). */
  logSeq: number;
  /** Anything the loop needs to continue identically (lr overrides, diagnostics cadence…). */
  extra: Record<string, unknown>;
}

interface Header {
  version: number;
  runId: string;
  step: number;
  reason: string;
  logSeq: number;
  extra: Record<string, unknown>;
  weights: { name: string; shape: number[]; offset: number; length: number }[];
  optimizerOffset: number;
  optimizerLength: number;
}

function bad(path: string, why: string): never {
  throw new MuonscopeError('INVALID_STATE', `checkpoint ${path} is unusable: ${why}`, { path });
}

export function encodeCheckpoint(c: Checkpoint): Uint8Array {
  const optimizer = encodeState(c.optimizer);
  let offset = 0;
  const weights = Object.entries(c.weights).map(([name, w]) => {
    const entry = { name, shape: [...w.shape], offset, length: w.values.length };
    offset += w.values.length * 4;
    return entry;
  });
  const header: Header = {
    version: VERSION,
    runId: c.runId,
    step: c.step,
    reason: c.reason,
    logSeq: c.logSeq,
    extra: c.extra,
    weights,
    optimizerOffset: offset,
    optimizerLength: optimizer.length,
  };
  const headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const start = Math.ceil((8 + headerBytes.length) / 4) * 4;
  const out = new Uint8Array(start + offset + optimizer.length);
  out.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(out.buffer).setUint32(4, headerBytes.length, true);
  out.set(headerBytes, 8);
  const view = new DataView(out.buffer, start);
  for (const w of weights) {
    const values = c.weights[w.name].values;
    for (let i = 0; i < values.length; i++) view.setFloat32(w.offset + i * 4, values[i], true);
  }
  out.set(optimizer, start + offset);
  return out;
}

export function decodeCheckpoint(bytes: Uint8Array, path = '(memory)'): Checkpoint {
  if (bytes.length < 8 || new TextDecoder().decode(bytes.subarray(0, 4)) !== MAGIC) bad(path, 'not a Muonscope checkpoint');
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset).getUint32(4, true);
  if (8 + headerLength > bytes.length) bad(path, 'truncated header');
  let header: Header;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as Header;
  } catch {
    bad(path, 'header is not JSON');
  }
  if (header.version !== VERSION) bad(path, `format version ${header.version}, this trainer reads ${VERSION}`);
  const start = Math.ceil((8 + headerLength) / 4) * 4;
  if (start + header.optimizerOffset + header.optimizerLength !== bytes.length) bad(path, 'truncated or padded payload');
  const view = new DataView(bytes.buffer, bytes.byteOffset + start);
  const weights: Checkpoint['weights'] = {};
  for (const w of header.weights) {
    const values = new Float32Array(w.length);
    for (let i = 0; i < w.length; i++) values[i] = view.getFloat32(w.offset + i * 4, true);
    weights[w.name] = { shape: w.shape, values };
  }
  const optimizer = decodeState(bytes.subarray(start + header.optimizerOffset));
  return { runId: header.runId, step: header.step, reason: header.reason, logSeq: header.logSeq, extra: header.extra, weights, optimizer };
}

/** Writes bytes to `file` so that readers see the old file or the whole new one. */
export function writeFileAtomic(file: string, bytes: Uint8Array): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, bytes);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  // The rename itself is durable only once the folder's entry is on disk.
  const dir = openSync(dirname(file), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

export function checkpointFileName(step: number): string {
  return `step-${String(step).padStart(8, '0')}.ckpt`;
}

export function writeCheckpoint(dir: string, c: Checkpoint): string {
  const file = join(dir, checkpointFileName(c.step));
  writeFileAtomic(file, encodeCheckpoint(c));
  return file;
}

export function readCheckpoint(file: string): Checkpoint {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new MuonscopeError('INVALID_ARGUMENT', `cannot read checkpoint ${file}: ${(e as Error).message}`, { path: file });
  }
  return decodeCheckpoint(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), file);
}

/** Checkpoint files in a folder, newest step first. */
export function listCheckpoints(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => /^step-\d{8}\.ckpt$/.test(n)).sort().reverse().map((n) => join(dir, n));
}

/** The newest checkpoint that decodes; damaged ones are skipped with their reasons. */
export function latestCheckpoint(dir: string): { file: string; checkpoint: Checkpoint; skipped: string[] } | null {
  const skipped: string[] = [];
  for (const file of listCheckpoints(dir)) {
    try {
      return { file, checkpoint: readCheckpoint(file), skipped };
    } catch (e) {
      skipped.push(`${file}: ${(e as Error).message}`);
    }
  }
  return null;
}

/**
 * Optimizer state snapshots: validation shared by every optimizer's `setState`, and a compact binary
 * encoding for checkpoints. The encoding is a JSON header (everything but the buffers, each buffer
 * replaced by its offset and length) followed by one little-endian float32 payload, so a snapshot
 * round-trips bit for bit and a checkpoint never goes through decimal text for its big arrays.
 *
 * Layout: "MSOS" | u32 LE header byte length | header UTF-8 | zero padding to 4 bytes | payload.
 */
import { MuonscopeError } from '../../common/errors.js';
import type { JsonValue, OptimizerKind, OptimizerState, ParamState } from './types.js';

const MAGIC = 'MSOS';
const BUFFER_TAG = '$f32';

function invalid(message: string, details: Record<string, unknown> = {}): never {
  throw new MuonscopeError('INVALID_STATE', message, details);
}

/** What an optimizer expects of a snapshot's parameters: their names, shapes and buffer names. */
export interface ExpectedParam {
  name: string;
  shape: readonly number[];
  buffers: readonly string[];
}

/**
 * Throws INVALID_STATE unless `state` is a snapshot of this kind of optimizer over exactly these
 * parameters. Called before anything is changed, so a refused `setState` leaves the optimizer as it was.
 */
export function checkState(state: unknown, kind: OptimizerKind, expected: readonly ExpectedParam[]): asserts state is OptimizerState {
  if (typeof state !== 'object' || state === null) invalid('optimizer state must be an object');
  const s = state as Partial<OptimizerState>;
  if (s.kind !== kind) invalid(`state is for a ${JSON.stringify(s.kind)} optimizer, this one is ${kind}`, { kind: s.kind });
  if (typeof s.step !== 'number' || !Number.isInteger(s.step) || s.step < 0) invalid(`state step must be a non-negative integer (got ${s.step})`);
  if (typeof s.hyperparameters !== 'object' || s.hyperparameters === null) invalid('state lacks hyperparameters');
  if (typeof s.params !== 'object' || s.params === null) invalid('state lacks params');
  const names = new Set(expected.map((p) => p.name));
  for (const name of Object.keys(s.params)) {
    if (!names.has(name)) invalid(`state has parameter "${name}", which this optimizer does not hold`, { name });
  }
  for (const p of expected) {
    const ps = s.params[p.name] as ParamState | undefined;
    if (!ps) invalid(`state lacks parameter "${p.name}"`, { name: p.name });
    if (!Array.isArray(ps.shape) || ps.shape.length !== p.shape.length || ps.shape.some((d, i) => d !== p.shape[i])) {
      invalid(`state shape of "${p.name}" is [${String(ps.shape).replace(/,/g, ', ')}], the parameter's is [${p.shape.join(', ')}]`, { name: p.name });
    }
    const size = p.shape.reduce((a, b) => a * b, 1);
    const got = Object.keys(ps.buffers ?? {});
    for (const b of got) if (!p.buffers.includes(b)) invalid(`state of "${p.name}" has an unknown buffer "${b}"`, { name: p.name, buffer: b });
    for (const b of p.buffers) {
      const buf = ps.buffers?.[b];
      if (!(buf instanceof Float32Array)) invalid(`state of "${p.name}" lacks a Float32Array buffer "${b}"`, { name: p.name, buffer: b });
      if (buf.length !== size) invalid(`state buffer "${b}" of "${p.name}" has ${buf.length} values, expected ${size}`, { name: p.name, buffer: b });
    }
  }
}

/** Walks a state tree, replacing each Float32Array with what `leaf` returns. */
function mapBuffers(value: unknown, leaf: (a: Float32Array) => JsonValue): JsonValue {
  if (value instanceof Float32Array) return leaf(value);
  if (Array.isArray(value)) return value.map((v) => mapBuffers(v, leaf));
  if (typeof value === 'object' && value !== null) {
    const out: { [k: string]: JsonValue } = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = mapBuffers(v, leaf);
    return out;
  }
  return value as JsonValue;
}

export function encodeState(state: OptimizerState): Uint8Array {
  const arrays: Float32Array[] = [];
  let offset = 0;
  const header = mapBuffers(state, (a) => {
    arrays.push(a);
    const ref = { [BUFFER_TAG]: [offset, a.length] };
    offset += a.length;
    return ref;
  });
  const headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const payloadStart = Math.ceil((8 + headerBytes.length) / 4) * 4;
  const out = new Uint8Array(payloadStart + offset * 4);
  const view = new DataView(out.buffer);
  out.set(new TextEncoder().encode(MAGIC), 0);
  view.setUint32(4, headerBytes.length, true);
  out.set(headerBytes, 8);
  let at = payloadStart;
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++, at += 4) view.setFloat32(at, a[i], true);
  }
  return out;
}

export function decodeState(bytes: Uint8Array): OptimizerState {
  if (bytes.length < 8 || new TextDecoder().decode(bytes.subarray(0, 4)) !== MAGIC) invalid('not a Muonscope optimizer state (bad magic)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getUint32(4, true);
  if (8 + headerLength > bytes.length) invalid('optimizer state is truncated (header)');
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  } catch (e) {
    invalid(`optimizer state header is not JSON: ${(e as Error).message}`);
  }
  const payloadStart = Math.ceil((8 + headerLength) / 4) * 4;
  const floats = (bytes.length - payloadStart) / 4;
  const rebuild = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(rebuild);
    if (typeof value !== 'object' || value === null) return value;
    const ref = (value as Record<string, unknown>)[BUFFER_TAG];
    if (ref !== undefined) {
      if (!Array.isArray(ref) || ref.length !== 2 || !ref.every((v) => Number.isInteger(v) && v >= 0) || ref[0] + ref[1] > floats) {
        invalid('optimizer state has a buffer reference outside its payload', { ref });
      }
      const [start, length] = ref as [number, number];
      const a = new Float32Array(length);
      for (let i = 0; i < length; i++) a[i] = view.getFloat32(payloadStart + 4 * (start + i), true);
      return a;
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = rebuild(v);
    return out;
  };
  return rebuild(header) as OptimizerState;
}

// Reads fixture sets written by test/fixtures/fixture_io.py.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ArrayRef {
  file: string;
  dtype: 'float32' | 'float64';
  shape: number[];
}

export const FIXTURES_DIR = join(__dirname, '..', 'fixtures');

export function loadIndex<T = Record<string, unknown>>(set: string): T {
  return JSON.parse(readFileSync(join(FIXTURES_DIR, set, 'index.json'), 'utf8')) as T;
}

export function loadArray(set: string, ref: ArrayRef): Float32Array | Float64Array {
  const buf = readFileSync(join(FIXTURES_DIR, set, ref.file));
  const bytes = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  const out = ref.dtype === 'float32' ? new Float32Array(bytes) : new Float64Array(bytes);
  const expected = ref.shape.reduce((a, b) => a * b, 1);
  if (out.length !== expected) throw new Error(`${set}/${ref.file}: ${out.length} values, shape says ${expected}`);
  return out;
}

export function loadF32(set: string, ref: ArrayRef): Float32Array {
  const a = loadArray(set, ref);
  return a instanceof Float32Array ? a : Float32Array.from(a);
}

export function loadF64(set: string, ref: ArrayRef): Float64Array {
  const a = loadArray(set, ref);
  return a instanceof Float64Array ? a : Float64Array.from(a);
}

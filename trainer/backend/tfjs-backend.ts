/**
 * Picks the TF.js backend for autodiff and the models, fastest first, and says why each faster one was
 * skipped. The native packages are optional dependencies: their install downloads libtensorflow from
 * outside the npm registry, which often fails, and installing Muonscope must succeed without them.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core alone has no gradients; the full @tensorflow/tfjs package registers them this way.
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import { MuonscopeError } from '../../common/errors.js';
import type { ProviderReport } from '../kernels/types.js';

export const TF_BACKENDS = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const;
export type TfBackendName = (typeof TF_BACKENDS)[number];
export type TfBackendPreference = 'auto' | TfBackendName;

type Attempt = { ok: true } | { ok: false; reason: string };

function describeLoadFailure(pkg: string, e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'MODULE_NOT_FOUND' && String(err.message).includes(pkg)) {
    return `not installed (${pkg} is optional: its install downloads libtensorflow from outside the npm registry)`;
  }
  return `failed to load: ${String(err?.message ?? e).split('\n')[0]}`;
}

async function tryNative(pkg: '@tensorflow/tfjs-node' | '@tensorflow/tfjs-node-gpu', gpu: boolean): Promise<Attempt> {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require(pkg);
  } catch (e) {
    return { ok: false, reason: describeLoadFailure(pkg, e) };
  }
  if (!(await tf.setBackend('tensorflow'))) return { ok: false, reason: `${pkg} loaded but its backend did not initialise` };
  if (gpu && !hasCudaDevice()) return { ok: false, reason: 'no CUDA device visible to libtensorflow' };
  return { ok: true };
}

/** libtensorflow silently runs on the CPU when CUDA is missing; the device list is the only honest signal. */
function hasCudaDevice(): boolean {
  return existsSync('/dev/nvidia0') || existsSync('/dev/nvidiactl');
}

/** Where the .wasm binaries are: next to the bundle (esbuild copies them) or in the package. */
export function wasmBinaryDir(): string {
  if (existsSync(join(__dirname, 'tfjs-backend-wasm.wasm'))) return __dirname + '/';
  // Unbundled (tests, library use): the package's own copies. A variable keeps esbuild from resolving it.
  const manifest = '@tensorflow/tfjs-backend-wasm/package.json';
  return join(dirname(require.resolve(manifest)), 'dist') + '/';
}

async function tryWasm(): Promise<Attempt> {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const wasm = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
    wasm.setWasmPaths(wasmBinaryDir());
    if (!(await tf.setBackend('wasm'))) return { ok: false, reason: 'the wasm backend did not initialise' };
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: describeLoadFailure('@tensorflow/tfjs-backend-wasm', e) };
  }
}

async function tryCpu(): Promise<Attempt> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  require('@tensorflow/tfjs-backend-cpu');
  return (await tf.setBackend('cpu')) ? { ok: true } : { ok: false, reason: 'the cpu backend did not initialise' };
}

const attempts: Record<TfBackendName, () => Promise<Attempt>> = {
  'tensorflow-gpu': () => tryNative('@tensorflow/tfjs-node-gpu', true),
  tensorflow: () => tryNative('@tensorflow/tfjs-node', false),
  wasm: tryWasm,
  cpu: tryCpu,
};

/**
 * Activates the first backend that loads (or exactly the one asked for, failing clearly if it cannot)
 * and reports the choice with a reason for every backend skipped.
 */
export async function selectTfBackend(preference: TfBackendPreference = 'auto'): Promise<ProviderReport<TfBackendName>> {
  if (preference !== 'auto' && !TF_BACKENDS.includes(preference)) {
    throw new MuonscopeError('BACKEND_UNAVAILABLE', `unknown TF.js backend "${preference}"; expected one of auto, ${TF_BACKENDS.join(', ')}`);
  }
  const order = preference === 'auto' ? TF_BACKENDS : [preference];
  const skipped: ProviderReport<TfBackendName>['skipped'] = [];
  for (const name of order) {
    const attempt = await attempts[name]();
    if (attempt.ok) return { chosen: name, skipped };
    skipped.push({ name, reason: attempt.reason });
  }
  const why = skipped.map((s) => `${s.name}: ${s.reason}`).join('; ');
  throw new MuonscopeError('BACKEND_UNAVAILABLE', `TF.js backend ${preference} could not be loaded (${why})`, { skipped });
}

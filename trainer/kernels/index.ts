/**
 * Chooses the kernel provider for the optimizer's matrix work: onnxruntime-node (CUDA where its
 * provider is installed and a device answers, else CPU), falling back to TF.js ops with the reason.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type * as Ort from 'onnxruntime-node';
import { MuonscopeError } from '../../common/errors.js';
import { OnnxKernels, type OnnxExecutionProvider } from './onnx-kernels.js';
import { TfjsKernels } from './tfjs-kernels.js';
import type { KernelProviderName, MatrixKernels, ProviderReport } from './types.js';

export type { KernelProviderName, MatrixKernels, ProviderReport } from './types.js';
export { OnnxKernels } from './onnx-kernels.js';
export { TfjsKernels } from './tfjs-kernels.js';

export const KERNEL_PREFERENCES = ['auto', 'onnxruntime', 'onnxruntime-cuda', 'onnxruntime-cpu', 'tfjs'] as const;
export type KernelPreference = (typeof KERNEL_PREFERENCES)[number];

export interface LoadedKernels {
  kernels: MatrixKernels;
  report: ProviderReport<KernelProviderName>;
}

function loadOrt(): { ort?: typeof Ort; reason?: string } {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return { ort: require('onnxruntime-node') as typeof Ort };
  } catch (e) {
    const msg = String((e as Error)?.message ?? e).split('\n')[0];
    return { reason: `onnxruntime-node failed to load: ${msg}` };
  }
}

/**
 * onnxruntime-node lists CUDA on every linux-x64 build, but its provider libraries arrive only when its
 * install script could download them; checking for the file avoids a noisy failed load.
 */
function cudaProviderInstalled(): boolean {
  const binDir = join(dirname(require.resolve('onnxruntime-node')), '..', 'bin', 'napi-v6', process.platform, process.arch);
  return existsSync(join(binDir, 'libonnxruntime_providers_cuda.so'));
}

/** Compiles and runs a 2×2 product, so a provider that lists itself but cannot execute is skipped. */
async function probe(ort: typeof Ort, ep: OnnxExecutionProvider): Promise<{ kernels?: OnnxKernels; reason?: string }> {
  if (!ort.listSupportedBackends().some((b) => b.name === ep) || (ep === 'cuda' && !cudaProviderInstalled())) {
    return { reason: ep === 'cuda' ? 'the CUDA execution provider is not installed (onnxruntime-node installs it only when its CUDA files can be downloaded)' : 'not supported by this onnxruntime-node build' };
  }
  const kernels = new OnnxKernels(ort, ep);
  try {
    const out = await kernels.matmul(Float32Array.of(1, 2, 3, 4), Float32Array.of(1, 0, 0, 1), 2, 2, 2);
    if (out[3] !== 4) return { reason: 'a probe product gave a wrong answer' };
    return { kernels };
  } catch (e) {
    await kernels.dispose().catch(() => undefined);
    return { reason: `failed to run: ${String((e as Error)?.message ?? e).split('\n')[0]}` };
  }
}

export function createTfjsKernels(): MatrixKernels {
  return new TfjsKernels();
}

/** Loads the fastest provider that works, or exactly the one asked for (failing clearly if it cannot). */
export async function loadKernels(preference: KernelPreference = 'auto'): Promise<LoadedKernels> {
  if (!KERNEL_PREFERENCES.includes(preference)) {
    throw new MuonscopeError('KERNELS_UNAVAILABLE', `unknown kernel provider "${preference}"; expected one of ${KERNEL_PREFERENCES.join(', ')}`);
  }
  const skipped: ProviderReport<KernelProviderName>['skipped'] = [];
  const wantOrt = preference !== 'tfjs';
  if (wantOrt) {
    const eps: OnnxExecutionProvider[] =
      preference === 'onnxruntime-cuda' ? ['cuda'] : preference === 'onnxruntime-cpu' ? ['cpu'] : ['cuda', 'cpu'];
    const { ort, reason } = loadOrt();
    for (const ep of eps) {
      const name: KernelProviderName = ep === 'cuda' ? 'onnxruntime-cuda' : 'onnxruntime-cpu';
      if (!ort) {
        skipped.push({ name, reason: reason! });
        continue;
      }
      const result = await probe(ort, ep);
      if (result.kernels) return { kernels: result.kernels, report: { chosen: name, skipped } };
      skipped.push({ name, reason: result.reason! });
    }
    if (preference !== 'auto') {
      const why = skipped.map((s) => `${s.name}: ${s.reason}`).join('; ');
      throw new MuonscopeError('KERNELS_UNAVAILABLE', `kernel provider ${preference} could not be loaded (${why})`, { skipped });
    }
  }
  return { kernels: createTfjsKernels(), report: { chosen: 'tfjs', skipped } };
}

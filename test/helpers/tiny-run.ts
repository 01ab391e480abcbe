// The small teacher–student MLP run the loop's tests share, and its parts built the way startSession
// builds them (cpu backend, onnxruntime CPU kernels), for tests that drive a Trainer directly.
import assert from 'node:assert/strict';
import { selectTfBackend } from '../../trainer/backend/tfjs-backend.js';
import { loadKernels } from '../../trainer/kernels/index.js';
import { HybridOptimizer } from '../../trainer/optim/hybrid.js';
import { validateRunConfig, type RunConfig } from '../../trainer/run/config.js';
import { optimizerConfig } from '../../trainer/run/session.js';
import { createWorkload } from '../../trainer/run/workloads.js';

export function tinyMlpConfig(overrides: Record<string, unknown> = {}): RunConfig {
  const r = validateRunConfig({
    name: 'test',
    steps: 40,
    batchSize: 32,
    model: { type: 'mlp', hiddenDims: [32, 32] },
    task: { type: 'teacherStudent', inputDim: 16, outputDim: 4, teacherWidth: 16 },
    evalEvery: 10,
    checkpointEvery: 20,
    compute: { backend: 'cpu', kernels: 'onnxruntime-cpu' },
    ...overrides,
  });
  assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
  return r.config;
}

export async function tinyRunParts(config: RunConfig) {
  await selectTfBackend('cpu');
  const workload = createWorkload(config, process.cwd());
  const { kernels } = await loadKernels('onnxruntime-cpu');
  const optimizer = new HybridOptimizer(workload.variables, { ...optimizerConfig(config), layout: workload.layouts }, kernels);
  return { workload, optimizer };
}

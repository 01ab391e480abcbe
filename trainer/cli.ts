/**
 * `muonscope` command line. `train` reports the compute it chose (and why it skipped the rest), then
 * trains and prints progress. Exit codes: 0 done, 1 crashed, 2 bad arguments, 3 backend unavailable.
 */
import { parseArgs } from 'node:util';
import { selectTfBackend, TF_BACKENDS, type TfBackendPreference } from './backend/tfjs-backend.js';
import { isMuonscopeError, MuonscopeError } from './errors.js';
import { KERNEL_PREFERENCES, loadKernels, type KernelPreference } from './kernels/index.js';
import type { DynMuonMode } from './optim/dynmuon.js';
import { TRACK3_LOGISTIC } from './optim/schedules.js';
import { trainMlp, type MlpRunConfig, type StepReport } from './run/train-mlp.js';

export const EXIT = { ok: 0, crashed: 1, badArguments: 2, backendUnavailable: 3 } as const;

const USAGE = `usage: muonscope train [--steps N] [--optimizer dynmuon|muon|adamw] [--mode exact|released|lrOnly]
                       [--lr X] [--seed N] [--backend auto|${TF_BACKENDS.join('|')}]
                       [--kernels ${KERNEL_PREFERENCES.join('|')}]`;

function positiveInt(name: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new MuonscopeError('INVALID_ARGUMENT', `--${name} must be a positive integer, got "${raw}"`);
  return n;
}

function positiveNumber(name: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new MuonscopeError('INVALID_ARGUMENT', `--${name} must be a positive number, got "${raw}"`);
  return n;
}

function oneOf<T extends string>(name: string, raw: string, allowed: readonly T[]): T {
  if (!allowed.includes(raw as T)) throw new MuonscopeError('INVALID_ARGUMENT', `--${name} must be one of ${allowed.join(', ')}; got "${raw}"`);
  return raw as T;
}

function runConfig(values: Record<string, string | undefined>): MlpRunConfig {
  const steps = positiveInt('steps', values.steps!);
  const lr = positiveNumber('lr', values.lr!);
  const seed = positiveInt('seed', values.seed!);
  const optimizer = oneOf('optimizer', values.optimizer!, ['dynmuon', 'muon', 'adamw'] as const);
  const mode = oneOf('mode', values.mode!, ['exact', 'released', 'lrOnly'] as const satisfies readonly DynMuonMode[]);
  const matrix =
    optimizer === 'dynmuon'
      ? { type: 'dynmuon' as const, mode, lr, totalSteps: steps, schedule: TRACK3_LOGISTIC }
      : optimizer === 'muon'
        ? { type: 'muon' as const, lr }
        : { type: 'adamw' as const };
  return {
    steps,
    evalEvery: Math.max(1, Math.round(steps / 20)),
    task: { inputDim: 64, outputDim: 16, teacherWidth: 128, curvatureDecay: 1, labelNoise: 0.1, batchSize: 256, validationSize: 2048, seed },
    model: { hiddenDims: [256, 256], activation: 'gelu', seed: seed + 1 },
    optimizer: { matrix, adamw: { lr: optimizer === 'adamw' ? lr : 3e-3, weightDecay: 0 } },
  };
}

function progressLine(r: StepReport, total: number, stepsPerSecond: number): string {
  const eta = (total - r.step - 1) / Math.max(stepsPerSecond, 1e-9);
  const parts = [
    `step ${String(r.step + 1).padStart(String(total).length)}/${total}`,
    `loss ${r.loss.toFixed(4)}`,
    r.valLoss !== undefined ? `val ${r.valLoss.toFixed(4)} (floor ${r.lossFloor.toFixed(4)})` : '',
    r.p !== null ? `p ${r.p >= 0 ? '+' : ''}${r.p.toFixed(3)}` : '',
    `${stepsPerSecond.toFixed(1)} steps/s`,
    `ETA ${eta.toFixed(0)}s`,
  ];
  return parts.filter(Boolean).join('  ');
}

async function train(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      steps: { type: 'string', default: '400' },
      optimizer: { type: 'string', default: 'dynmuon' },
      mode: { type: 'string', default: 'exact' },
      lr: { type: 'string', default: '0.02' },
      seed: { type: 'string', default: '1' },
      backend: { type: 'string', default: 'auto' },
      kernels: { type: 'string', default: 'auto' },
    },
    strict: true,
  });
  const config = runConfig(values);
  const backend = await selectTfBackend(oneOf('backend', values.backend!, ['auto', ...TF_BACKENDS] as TfBackendPreference[]));
  const { kernels, report } = await loadKernels(oneOf('kernels', values.kernels!, KERNEL_PREFERENCES) as KernelPreference);
  const describe = (kind: string, r: { chosen: string; skipped: { name: string; reason: string }[] }) =>
    [`${kind}: ${r.chosen}`, ...r.skipped.map((s) => `  skipped ${s.name}: ${s.reason}`)].join('\n');
  console.log(describe('TF.js backend', backend));
  console.log(describe('optimizer kernels', report));
  const m = config.optimizer.matrix;
  console.log(`training an MLP (64→256→256→16) on teacher–student regression for ${config.steps} steps with ${m.type}${m.type === 'dynmuon' ? ` (${m.mode}, Track-3 logistic p schedule)` : ''}`);
  const started = performance.now();
  const { finalValLoss } = await trainMlp(config, kernels, (r) => {
    if (r.valLoss === undefined) return;
    console.log(progressLine(r, config.steps, (r.step + 1) / ((performance.now() - started) / 1000)));
  });
  console.log(`done: validation loss ${finalValLoss.toFixed(4)} (best possible ${(0.1 ** 2).toFixed(4)}) in ${((performance.now() - started) / 1000).toFixed(1)}s`);
  await kernels.dispose();
  return EXIT.ok;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'train') return await train(rest);
    console.error(command ? `unknown command "${command}"\n${USAGE}` : USAGE);
    return EXIT.badArguments;
  } catch (e) {
    if (isMuonscopeError(e, 'BACKEND_UNAVAILABLE') || isMuonscopeError(e, 'KERNELS_UNAVAILABLE')) {
      console.error(`muonscope: ${e.message}`);
      return EXIT.backendUnavailable;
    }
    if (isMuonscopeError(e) || (e as NodeJS.ErrnoException)?.code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`muonscope: ${(e as Error).message}\n${USAGE}`);
      return EXIT.badArguments;
    }
    console.error('muonscope: crashed:', e);
    return EXIT.crashed;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});

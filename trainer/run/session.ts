/**
 * Starts (or resumes) a run from a validated config: compute, workload, optimizer, run folder, log,
 * WebSocket server and the loop. The CLI is a thin shell around this; tests drive it directly.
 */
import { randomUUID } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import { selectTfBackend, type TfBackendName, type TfBackendPreference } from '../backend/tfjs-backend.js';
import { MuonscopeError } from '../../common/errors.js';
import { loadKernels, type KernelPreference, type LoadedKernels } from '../kernels/index.js';
import { HybridOptimizer, type HybridConfig } from '../optim/hybrid.js';
import { PROTOCOL_VERSION } from '../../common/protocol.js';
import { dashboardHandler } from '../server/dashboard-page.js';
import { generateToken, startServer, type TrainerServer } from '../server/server.js';
import type { ProviderReport } from '../kernels/types.js';
import { latestCheckpoint, readCheckpoint, type Checkpoint } from './checkpoint.js';
import type { RunConfig } from './config.js';
import { RunLog } from '../../common/run-folder/log.js';
import { removeTrainerInfo, runDirOf, writeTrainerInfo, type RunPaths } from '../../common/run-folder/layout.js';
import { createRunDir } from './new-run-dir.js';
import { AdvisorRunner, type AdvisorRunnerOptions } from './advisor-runner.js';
import { DiagnosticsRunner } from './diagnostics-runner.js';
import { Trainer, type ProgressReport } from './trainer.js';
import type { Workload } from './workload.js';
import { createWorkload } from './workloads.js';

export interface SessionOptions {
  config: RunConfig;
  /** Folder the config's relative paths are resolved against. */
  configDir: string;
  runsRoot: string;
  host?: string;
  port?: number;
  /** A checkpoint file or a run folder (its newest checkpoint). */
  resume?: string;
  onProgress?: (r: ProgressReport) => void;
  onLine?: (line: string) => void;
}

export interface Session {
  runId: string;
  paths: RunPaths;
  url: string;
  token: string;
  /** The dashboard in a browser, token in the fragment. */
  dashboardUrl: string;
  trainer: Trainer;
  backend: ProviderReport<TfBackendName>;
  kernels: LoadedKernels['report'];
  workload: Workload;
  /** Resolves with the final state once the loop ends and everything is closed. */
  done: Promise<string>;
}

export function optimizerConfig(config: RunConfig): HybridConfig {
  const o = config.optimizer;
  const adamw = { lr: config.adamw.lr, weightDecay: config.adamw.weightDecay, betas: config.adamw.betas as [number, number] };
  const routing = config.routing;
  if (o.type === 'adamw') return { matrix: { type: 'adamw' }, adamw, routing };
  if (o.type === 'muon') return { matrix: { ...o }, adamw, routing };
  return { matrix: { ...o, totalSteps: config.steps }, adamw, routing };
}

export function advisorOptions(config: RunConfig): AdvisorRunnerOptions {
  const a = config.advisor;
  // Two diagnostics rounds (the expensive probes may be spaced out further by the budget): older
  // measurements describe another phase of training.
  const maxAge = Math.max(2 * config.diagnostics.every + 1, 200);
  return { mode: a.mode, probeEvery: a.probeEvery, probeBatches: a.probeBatches, probeDirections: a.probeDirections, probeMicrobatches: a.probeMicrobatches, cooldownSteps: a.cooldownSteps, maxAge, autoMinConfidence: a.autoMinConfidence };
}

/** Puts checkpointed weights into the variables, checking every name and shape before writing any. */
export function restoreWeights(workload: Workload, checkpoint: Checkpoint): void {
  const byName = new Map(workload.variables.map((v) => [v.name, v]));
  const names = Object.keys(checkpoint.weights);
  if (names.length !== byName.size || names.some((n) => !byName.has(n))) {
    throw new MuonscopeError('INVALID_STATE', `checkpoint parameters (${names.join(', ')}) do not match this model (${[...byName.keys()].join(', ')})`);
  }
  for (const [name, w] of Object.entries(checkpoint.weights)) {
    const v = byName.get(name)!;
    if (w.shape.join('x') !== v.shape.join('x')) throw new MuonscopeError('INVALID_STATE', `checkpoint shape of ${name} is [${w.shape}], the model's is [${v.shape}]`);
  }
  for (const [name, w] of Object.entries(checkpoint.weights)) byName.get(name)!.assign(tf.tensor(w.values, w.shape));
}

function resolveResume(resume: string): { paths: RunPaths; file: string; checkpoint: Checkpoint } {
  if (resume.endsWith('.ckpt')) return { paths: runDirOf(resume), file: resume, checkpoint: readCheckpoint(resume) };
  const paths = runDirOf(resume);
  const latest = latestCheckpoint(paths.checkpoints);
  if (!latest) throw new MuonscopeError('INVALID_ARGUMENT', `no usable checkpoint in ${paths.checkpoints}`, { path: resume });
  return { paths, file: latest.file, checkpoint: latest.checkpoint };
}

export async function startSession(opts: SessionOptions): Promise<Session> {
  const { config } = opts;
  const backend = await selectTfBackend(config.compute.backend as TfBackendPreference);
  const loaded = await loadKernels(config.compute.kernels as KernelPreference);
  const workload = createWorkload(config, opts.configDir);
  const optimizer = new HybridOptimizer(workload.variables, { ...optimizerConfig(config), layout: workload.layouts }, loaded.kernels);

  let paths: RunPaths;
  let runId: string;
  let startStep = 0;
  let resumedFrom: string | undefined;
  let resumedExtra: Record<string, unknown> | undefined;
  let diagnostics = { every: config.diagnostics.every, adaptive: config.diagnostics.adaptive, budgetPct: config.diagnostics.budgetPct };
  if (opts.resume) {
    const r = resolveResume(opts.resume);
    restoreWeights(workload, r.checkpoint);
    optimizer.setState(r.checkpoint.optimizer);
    paths = r.paths;
    runId = r.checkpoint.runId;
    startStep = r.checkpoint.step;
    resumedFrom = r.file;
    resumedExtra = r.checkpoint.extra;
    const saved = r.checkpoint.extra.diagnostics as typeof diagnostics | undefined;
    if (saved) diagnostics = saved;
  } else {
    paths = createRunDir(opts.runsRoot, config);
    runId = randomUUID();
  }

  const log = new RunLog(paths.log);
  const routes = new Map(optimizer.routes.map((r) => [r.name, r.route]));
  log.append({
    kind: 'run_started',
    step: startStep,
    runId,
    protocol: PROTOCOL_VERSION,
    config,
    backend,
    kernels: loaded.report,
    totalSteps: config.steps,
    task: { name: workload.taskName, lossFloor: workload.lossFloor, lossFloorLabel: workload.lossFloorLabel },
    params: workload.variables.map((v) => ({ name: v.name, shape: [...v.shape], route: routes.get(v.name) ?? 'adamw' })),
    ...(resumedFrom ? { resumedFrom } : {}),
  });

  const trainer = new Trainer(
    {
      runId,
      totalSteps: config.steps,
      evalEvery: config.evalEvery,
      checkpointEvery: config.checkpointEvery,
      checkpointDir: paths.checkpoints,
      diagnosticsEvery: diagnostics.every,
      diagnosticsAdaptive: diagnostics.adaptive,
      diagnosticsBudgetPct: diagnostics.budgetPct,
    },
    workload,
    optimizer,
    log,
    startStep,
    opts.onProgress,
  );

  const diagnosticsRunner = new DiagnosticsRunner(workload, optimizer, config.diagnostics, () => trainer.diagnosticsSettings, (r) => log.append(r), config.batchSize);
  trainer.observers.push(diagnosticsRunner);
  // The p-probe spends the diagnostics' overhead budget: its cost counts in their overhead, and it runs
  // only while that leaves room.
  log.subscribe((r) => {
    if (r.kind === 'p_probe' || r.kind === 'p_model') diagnosticsRunner.scheduler.recordExternal('pProbe', r.costMs);
  });
  const sharedBudget = () => ({ ...trainer.diagnosticsSettings, overheadPct: diagnosticsRunner.scheduler.measuredOverheadPct() });
  // After the diagnostics: the advisor reads what they just logged.
  const advisor = new AdvisorRunner(workload, optimizer, log, advisorOptions(config), (command, meta) => trainer.enqueue(command, meta), opts.resume ? startStep : null, sharedBudget);
  trainer.observers.push(advisor);
  if (resumedExtra) trainer.restoreObservers(resumedExtra.observers);

  const token = generateToken();
  let server: TrainerServer | undefined;
  try {
    server = await startServer({
      host: opts.host ?? '127.0.0.1',
      port: opts.port ?? 0,
      token,
      runId,
      runDir: paths.dir,
      source: log,
      onCommand: (msg) => trainer.enqueue(msg.command, { id: msg.id, source: msg.source ?? 'client' }),
      log: opts.onLine,
      httpHandler: dashboardHandler(() => server?.url ?? ''),
    });
  } catch (e) {
    log.close();
    throw e;
  }
  const live = server;
  writeTrainerInfo(paths, { pid: process.pid, url: live.url, token });

  const done = (async () => {
    try {
      return await trainer.run();
    } finally {
      advisor.dispose();
      removeTrainerInfo(paths);
      await live.close();
      log.close();
      workload.dispose();
      await loaded.kernels.dispose();
    }
  })();

  return { runId, paths, url: live.url, token, dashboardUrl: `${live.url.replace(/^ws/, 'http')}/#token=${token}`, trainer, backend, kernels: loaded.report, workload, done };
}

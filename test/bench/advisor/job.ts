/**
 * One training run of the evidence harness: a real session (the same loop, optimizers, diagnostics and
 * advisor a user runs), in a throwaway run folder, reduced to its validation curve and what the advisor did.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateRunConfig } from '../../../trainer/run/config.js';
import { readRunLog } from '../../../common/run-folder/log.js';
import { startSession } from '../../../trainer/run/session.js';
import { OPTIMIZERS, TASKS } from './plan.js';

export interface JobSpec {
  task: string;
  optimizer: string;
  lr: number;
  seed: number;
}

export interface JobResult extends JobSpec {
  /** [step, validation loss] after each evaluation. */
  evals: [number, number][];
  lossFloor: number | null;
  suggestions: number;
  applied: { step: number; rule: string; title: string }[];
  wallMs: number;
  /** Set when the run crashed or diverged (a non-finite loss pauses it; the job then stops it). */
  failure?: string;
}

/** Diagnostics are off unless the optimizer needs them (the advisor reads them); they never change training. */
const NO_DIAGNOSTICS = { every: 1_000_000, curvature: false, noise: false };

export function jobConfig(spec: JobSpec): Record<string, unknown> {
  const task = TASKS.find((t) => t.name === spec.task);
  const optimizer = OPTIMIZERS.find((o) => o.name === spec.optimizer);
  if (!task || !optimizer) throw new Error(`unknown task ${spec.task} or optimizer ${spec.optimizer}`);
  const opt = optimizer.config(spec.lr);
  return {
    name: `${spec.task}-${spec.optimizer}`,
    seed: spec.seed,
    steps: task.steps,
    evalEvery: task.evalEvery,
    checkpointEvery: 10_000_000,
    ...task.config,
    diagnostics: NO_DIAGNOSTICS,
    ...opt,
  };
}

/** A run that throws (a crash inside the trainer) is a failed run in the results, not the end of the harness. */
export async function runJob(spec: JobSpec): Promise<JobResult> {
  try {
    return await runJobOrThrow(spec);
  } catch (e) {
    return { ...spec, evals: [], lossFloor: null, suggestions: 0, applied: [], wallMs: 0, failure: `crashed: ${String((e as Error)?.message ?? e).slice(0, 300)}` };
  }
}

async function runJobOrThrow(spec: JobSpec): Promise<JobResult> {
  const checked = validateRunConfig(jobConfig(spec));
  if (!checked.ok) throw new Error(`harness config for ${JSON.stringify(spec)}: ${JSON.stringify(checked.issues)}`);
  const root = mkdtempSync(join(tmpdir(), 'muonscope-advisor-'));
  const started = performance.now();
  try {
    const session = await startSession({ config: checked.config, configDir: process.cwd(), runsRoot: root, onLine: () => undefined });
    // A diverged run pauses itself with an alert; the harness records it and stops it.
    const unsubscribe = session.trainer.currentState === 'running' ? watchForPause(session) : () => undefined;
    await session.done;
    unsubscribe();
    const records = readRunLog(session.paths.log).records;
    const evals: [number, number][] = [];
    let lossFloor: number | null = null;
    let failure: string | undefined;
    const titles = new Map<string, { rule: string; title: string }>();
    const applied: JobResult['applied'] = [];
    let suggestions = 0;
    for (const r of records) {
      if (r.kind === 'run_started') lossFloor = r.task.lossFloor;
      else if (r.kind === 'eval') evals.push([r.step + 1, r.valLoss]);
      else if (r.kind === 'alert' && r.level === 'error') failure = `${r.code}: ${r.message}`.slice(0, 300);
      else if (r.kind === 'suggestion') {
        suggestions++;
        titles.set(r.id, { rule: r.rule, title: r.title });
      } else if (r.kind === 'suggestion_outcome' && r.outcome === 'applied') applied.push({ step: r.step, ...titles.get(r.id)! });
    }
    return { ...spec, evals, lossFloor, suggestions, applied, wallMs: performance.now() - started, ...(failure ? { failure } : {}) };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

function watchForPause(session: Awaited<ReturnType<typeof startSession>>): () => void {
  const timer = setInterval(() => {
    if (session.trainer.currentState === 'paused') void session.trainer.enqueue({ kind: 'stop', reason: 'diverged (harness)' }, { source: 'harness' }).catch(() => undefined);
  }, 200);
  return () => clearInterval(timer);
}

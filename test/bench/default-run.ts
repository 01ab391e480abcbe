// The default run as `npm start` runs it (`node dist/trainer/cli.js train`, no config file), timed from
// the moment the trainer process is spawned: when the loss first reaches a target, when every chart of
// the dashboard has data, how long the whole run takes, and the wall time from step 0 to the last step,
// which `bench:trainer` compares against the same run with nothing watching it.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LogRecord } from '../../common/protocol.js';
import { runDirOf } from '../../common/run-folder/layout.js';
import { readRunLog } from '../../common/run-folder/log.js';
import { RunStore, type LayerHistory, type Series } from '../../webview/store.js';

/** At least one point the chart can draw. */
function drawable(s: Series): boolean {
  for (let i = 0; i < s.length; i++) if (Number.isFinite(s.y[i])) return true;
  return false;
}

function someLayer(run: RunStore, has: (l: LayerHistory) => boolean): boolean {
  for (const l of run.layers.values()) if (has(l)) return true;
  return false;
}

/**
 * Each chart (or chart-like table) of the dashboard and what it draws from the dashboard's own store
 * (webview/store.ts), as the views in webview/views/ read it: it has data once that is drawable.
 */
export const CHARTS: { view: string; chart: string; has: (run: RunStore) => boolean }[] = [
  { view: 'Overview', chart: 'loss', has: (run) => drawable(run.loss) },
  { view: 'Overview', chart: 'validation loss', has: (run) => drawable(run.valLoss) },
  { view: 'Overview', chart: 'learning rate, p, steps/s', has: (run) => drawable(run.lr) && drawable(run.p) && drawable(run.stepMs) },
  { view: 'Layers', chart: 'table: p, ranks, update RMS, update/weight', has: (run) => someLayer(run, (l) => l.stats !== null) },
  { view: 'Layers', chart: 'table: κ along the update', has: (run) => someLayer(run, (l) => drawable(l.series.kappa)) },
  { view: 'Layers', chart: 'table: noise scale B', has: (run) => someLayer(run, (l) => drawable(l.series.noiseScale)) },
  { view: 'Layer detail', chart: 'spectra, heatmap, shaping', has: (run) => someLayer(run, (l) => l.latestSpectra !== null) },
  { view: 'Layer detail', chart: 'curvature along singular directions', has: (run) => someLayer(run, (l) => l.directions !== null) },
  { view: 'Curvature & noise', chart: 'η/η*', has: (run) => drawable(run.model.etaRatio) },
  { view: 'Curvature & noise', chart: 'κ along the update vs its edge', has: (run) => drawable(run.model.kappaUpdate) },
  { view: 'Curvature & noise', chart: 'overshoot fraction', has: (run) => drawable(run.model.overshootFraction) },
  { view: 'Curvature & noise', chart: 'Hessian eigenvalues', has: (run) => drawable(run.model.eigen1) || drawable(run.model.topEigenvalue) },
  { view: 'Curvature & noise', chart: 'gradient noise scale', has: (run) => drawable(run.model.noiseScale) },
  { view: 'Curvature & noise', chart: 'SNR along singular directions', has: (run) => drawable(run.model.snrTop) },
  { view: 'Curvature & noise', chart: 'diagnostics overhead', has: (run) => drawable(run.model.overheadPct) },
  // The one-step p-probe's table is shown only for older logs that hold p_probe records; runs log p_model.
  { view: 'Suggestions', chart: 'p from the mode model', has: (run) => run.pModels.length > 0 },
];

/** The same run with nothing watching it: no diagnostics (one spectra round at step 0 remains), no advisor. */
export const UNOBSERVED = { diagnostics: { every: 1_000_000, curvature: false, noise: false }, advisor: { mode: 'off' } };

export interface RunTimeline {
  /** 1-minute load average when the run started and when it ended. */
  load: [number, number];
  steps: number;
  /** From spawn: the first step record, the whole process. */
  firstStepS: number;
  totalS: number;
  /** Wall time from the step-0 record to the last step's: training with whatever watched it. */
  step0ToEndS: number;
  /** From spawn: the first step whose printed loss is ≤ target, and the first whose mean over 10 steps is. */
  lossTargetS: number | null;
  lossTargetMean10S: number | null;
  lossTargetStep: number | null;
  /** Mean loss of the last 50 steps and the last validation loss. */
  finalLoss: number;
  finalValLoss: number | null;
  lossFloor: number | null;
  /** From spawn: when each chart first had data (null: never), and when all had. */
  charts: { view: string; chart: string; s: number | null }[];
  allChartsS: number | null;
  /** The trainer's own account: diagnostics (and p-probe) time over training time, at the last record. */
  reportedOverheadPct: number | null;
  costsMs: Record<string, number>;
}

function seconds(ms: number): number {
  return +(ms / 1000).toFixed(2);
}

/** Summarises a run's log, with times measured from `t0` (epoch ms, when the process was spawned). */
export function timeline(records: LogRecord[], t0: number, exitedAt: number, lossTarget: number, load: [number, number]): RunTimeline {
  const steps = records.filter((r): r is Extract<LogRecord, { kind: 'step' }> => r.kind === 'step');
  const since = (t: number) => seconds(t - t0);
  const single = steps.find((r) => r.loss <= lossTarget);
  const mean10 = steps.find((_, i) => i >= 9 && steps.slice(i - 9, i + 1).reduce((s, r) => s + r.loss, 0) / 10 <= lossTarget);
  // Replays the log into the dashboard's store, noting when each chart first has something to draw.
  const firstData = new Map<number, number>();
  const store = new RunStore('bench');
  for (const r of records) {
    store.apply([r]);
    for (let i = 0; i < CHARTS.length; i++) if (!firstData.has(i) && CHARTS[i].has(store)) firstData.set(i, r.t);
  }
  const charts = CHARTS.map((c, i) => ({ view: c.view, chart: c.chart, s: firstData.has(i) ? since(firstData.get(i)!) : null }));
  const evals = records.filter((r): r is Extract<LogRecord, { kind: 'eval' }> => r.kind === 'eval');
  const started = records.find((r): r is Extract<LogRecord, { kind: 'run_started' }> => r.kind === 'run_started');
  const cost = records.filter((r): r is Extract<LogRecord, { kind: 'diagnostics_cost' }> => r.kind === 'diagnostics_cost').at(-1);
  const tail = steps.slice(-50);
  return {
    load,
    steps: steps.length,
    firstStepS: since(steps[0].t),
    totalS: since(exitedAt),
    step0ToEndS: seconds(steps[steps.length - 1].t - steps[0].t),
    lossTargetS: single ? since(single.t) : null,
    lossTargetMean10S: mean10 ? since(mean10.t) : null,
    lossTargetStep: single?.step ?? null,
    finalLoss: +(tail.reduce((s, r) => s + r.loss, 0) / tail.length).toFixed(4),
    finalValLoss: evals.length ? +evals[evals.length - 1].valLoss.toFixed(4) : null,
    lossFloor: started?.task.lossFloor ?? null,
    charts,
    allChartsS: charts.every((c) => c.s !== null) ? Math.max(...charts.map((c) => c.s!)) : null,
    reportedOverheadPct: cost ? +cost.overheadPct.toFixed(2) : null,
    costsMs: cost ? Object.fromEntries(Object.entries(cost.costsMs).map(([k, v]) => [k, Math.round(v)])) : {},
  };
}

/**
 * Spawns the built CLI as `npm start` does (no config: the default run), or with a config of overrides,
 * in a fresh folder; resolves with its timeline once it exits. Rejects on a failed run or after `timeoutMs`.
 */
export async function timeDefaultRun(cli: string, overrides: Record<string, unknown> | null, lossTarget: number, timeoutMs: number): Promise<RunTimeline> {
  const dir = mkdtempSync(join(tmpdir(), 'muonscope-default-run-'));
  const args = [cli, 'train'];
  if (overrides) {
    writeFileSync(join(dir, 'run.muonscope.json'), JSON.stringify(overrides));
    args.push('run.muonscope.json');
  }
  const load0 = loadavg()[0];
  const t0 = Date.now();
  const child = spawn(process.execPath, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  const exitedAt = Date.now();
  clearTimeout(timer);
  if (code !== 0) throw new Error(`the run exited with ${code} after ${seconds(exitedAt - t0)} s:\n${stderr.slice(-2000)}`);
  const listening = JSON.parse(stdout.split('\n')[0]) as { runDir: string };
  const { records } = readRunLog(runDirOf(listening.runDir).log);
  return timeline(records, t0, exitedAt, lossTarget, [+load0.toFixed(2), +loadavg()[0].toFixed(2)]);
}

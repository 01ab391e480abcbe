/**
 * What the runs tree, the status bar and the CodeLens show about a run, folded from its log records.
 * Pure: the same fold serves a live stream and a finished run read from its folder.
 */
import type { LogRecord, RunState } from '../common/protocol.js';
import { optimizerLabel } from '../common/optimizer-label.js';

export interface RunSummary {
  /** The trainer's own id for the run (from run_started), when seen. */
  trainerRunId?: string;
  name?: string;
  state?: RunState;
  stateReason?: string;
  step: number;
  totalSteps?: number;
  loss?: number;
  valLoss?: number;
  lr?: number;
  p?: number | null;
  optimizer?: string;
  backend?: string;
  kernels?: string;
  lastSeq: number;
  /** The last error alert (e.g. the trainer's CRASH record). */
  lastError?: string;
  /** Ids of the advisor's suggestions nobody has acted on yet. */
  pendingSuggestions: string[];
}

export function emptySummary(): RunSummary {
  return { step: 0, lastSeq: 0, pendingSuggestions: [] };
}

/** Folds records (in seq order) into the summary; records at or below its lastSeq are ignored. */
export function foldSummary(summary: RunSummary, records: readonly LogRecord[]): RunSummary {
  const s = { ...summary };
  for (const r of records) {
    if (r.seq <= s.lastSeq) continue;
    s.lastSeq = r.seq;
    s.step = Math.max(s.step, r.step);
    switch (r.kind) {
      case 'run_started': {
        s.trainerRunId = r.runId;
        const name = (r.config as { name?: unknown } | null)?.name;
        if (typeof name === 'string') s.name = name;
        s.totalSteps = r.totalSteps;
        s.optimizer = optimizerLabel((r.config as { optimizer?: unknown } | null)?.optimizer);
        s.backend = r.backend.chosen;
        s.kernels = r.kernels.chosen;
        s.step = r.step;
        // The trainer logs a state record only on changes; a run that has started is running.
        s.state = 'running';
        s.stateReason = r.resumedFrom ? `resumed from ${r.resumedFrom}` : 'started';
        s.lastError = undefined;
        break;
      }
      case 'step':
        s.loss = r.loss;
        s.lr = r.lr;
        s.p = r.p;
        break;
      case 'eval':
        s.valLoss = r.valLoss;
        break;
      case 'state':
        s.state = r.state;
        s.stateReason = r.reason;
        break;
      case 'alert':
        if (r.level === 'error') s.lastError = r.message;
        break;
      case 'suggestion':
        s.pendingSuggestions = [...s.pendingSuggestions, r.id];
        break;
      case 'suggestion_outcome':
        s.pendingSuggestions = s.pendingSuggestions.filter((id) => id !== r.id);
        break;
      default:
        break;
    }
  }
  return s;
}

/** A run whose log says it is still going but whose trainer is gone died without saying so. */
export function effectiveState(summary: RunSummary, trainerAlive: boolean): RunState | undefined {
  if (!trainerAlive && (summary.state === 'running' || summary.state === 'paused' || summary.state === undefined)) return 'crashed';
  return summary.state;
}

const fmt = (x: number | undefined | null, digits = 4) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : Number(x.toPrecision(digits)).toString());

/** One line: "step 120/300 · loss 0.0123 · p -0.25". */
export function describeProgress(s: RunSummary): string {
  const parts = [`step ${s.step}${s.totalSteps ? `/${s.totalSteps}` : ''}`];
  if (s.loss !== undefined) parts.push(`loss ${fmt(s.loss)}`);
  if (s.p !== undefined && s.p !== null) parts.push(`p ${s.p >= 0 ? '+' : ''}${s.p.toFixed(2)}`);
  return parts.join(' · ');
}

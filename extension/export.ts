/**
 * Export Run: the run's log as CSV (one row per logged step, with the latest validation loss joined in)
 * or as JSON (every record, as logged). Pure: records in, text out.
 */
import type { LogRecord, RecordOf } from '../common/protocol.js';

export const CSV_COLUMNS = ['step', 'loss', 'valLoss', 'lr', 'p', 'stepMs', 'tokensPerS', 't'] as const;

function cell(v: number | string | null | undefined): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : '';
  return /[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** Steps in log order; `valLoss` is the eval recorded at that step, empty where there was none. */
export function recordsToCsv(records: readonly LogRecord[]): string {
  const evalAt = new Map<number, number>();
  for (const r of records) if (r.kind === 'eval') evalAt.set(r.step, r.valLoss);
  const lines = [CSV_COLUMNS.join(',')];
  for (const r of records) {
    if (r.kind !== 'step') continue;
    const s = r as RecordOf<'step'>;
    lines.push([s.step, s.loss, evalAt.get(s.step), s.lr, s.p, s.stepMs, s.tokensPerS, s.t].map(cell).join(','));
  }
  return lines.join('\n') + '\n';
}

export function recordsToJson(records: readonly LogRecord[]): string {
  return JSON.stringify(records, null, 1) + '\n';
}

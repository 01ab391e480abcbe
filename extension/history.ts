/**
 * The extension's bounded in-memory copy of a run's records, and the bookkeeping that makes replay
 * exact: `lastSeq` is what a reconnecting client asks the trainer to continue after, and `add` keeps
 * only records it has not seen, so a replay that overlaps what arrived before the drop adds nothing twice.
 *
 * The bound (the maxHistoryPoints setting) drops the oldest records once exceeded. The records that
 * describe the run rather than a point on a chart (run_started, state, control, alert, checkpoint) are
 * kept regardless, so a trimmed history still says what happened. When trimmed, a full replay reads the
 * run log from disk, which is the truth (see `fullHistory`).
 */
import type { LogRecord } from '../common/protocol.js';

const KEPT_KINDS = new Set<LogRecord['kind']>(['run_started', 'state', 'control', 'alert', 'checkpoint']);

export class RunHistory {
  private kept: LogRecord[] = [];
  private seqSeen = 0;
  private dropped = 0;

  constructor(private maxRecords: number) {}

  get lastSeq(): number {
    return this.seqSeen;
  }

  /** True once any record has been dropped to stay within the bound. */
  get trimmed(): boolean {
    return this.dropped > 0;
  }

  get size(): number {
    return this.kept.length;
  }

  records(): readonly LogRecord[] {
    return this.kept;
  }

  setLimit(maxRecords: number): void {
    this.maxRecords = maxRecords;
    this.enforceLimit();
  }

  /** Adds the records newer than any seen; returns exactly those, in order. */
  add(records: readonly LogRecord[]): LogRecord[] {
    const fresh: LogRecord[] = [];
    for (const r of records) {
      if (r.seq <= this.seqSeen) continue;
      this.seqSeen = r.seq;
      fresh.push(r);
    }
    if (fresh.length) {
      this.kept.push(...fresh);
      this.enforceLimit();
    }
    return fresh;
  }

  private enforceLimit(): void {
    const excess = this.kept.length - Math.max(1, this.maxRecords);
    if (excess <= 0) return;
    // Drop the oldest chart points first; the run's narrative records stay.
    let toDrop = excess;
    const next: LogRecord[] = [];
    for (const r of this.kept) {
      if (toDrop > 0 && !KEPT_KINDS.has(r.kind)) {
        toDrop--;
        continue;
      }
      next.push(r);
    }
    this.dropped += excess - toDrop;
    this.kept = next;
  }
}

/**
 * Everything a panel needs to draw the run with no gaps: the log on disk when memory was trimmed
 * (and the log is readable here), followed by whatever memory holds beyond the log's end.
 */
export function fullHistory(history: RunHistory, readLog: (() => readonly LogRecord[] | undefined) | undefined): readonly LogRecord[] {
  if (!history.trimmed || !readLog) return history.records();
  const disk = readLog();
  if (!disk || disk.length === 0) return history.records();
  const diskLast = disk[disk.length - 1].seq;
  return [...disk, ...history.records().filter((r) => r.seq > diskLast)];
}

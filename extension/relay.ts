/**
 * Per-panel batching of host → dashboard messages. A trainer can log hundreds of records a second;
 * posting each to a webview would flood it. The relay queues messages, merges consecutive `records`
 * messages of one run into one, and posts at most `maxPerFlush` messages every `intervalMs` (defaults:
 * 3 per 100 ms, i.e. ≤ 30 messages a second). Large replays are split into chunks so no single message
 * blocks the webview for long. Timers are injected so the pacing is testable without waiting.
 */
import type { ToDashboard } from '../common/dashboard-messages.js';

export interface RelayTimers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: RelayTimers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export interface RelayOptions {
  intervalMs?: number;
  maxPerFlush?: number;
  /** Records per `records` message at most. */
  maxRecordsPerMessage?: number;
  timers?: RelayTimers;
}

export class PanelRelay {
  private readonly queue: ToDashboard[] = [];
  private timer: unknown;
  private lastFlush = -Infinity;
  private disposed = false;
  private readonly intervalMs: number;
  private readonly maxPerFlush: number;
  private readonly maxRecords: number;
  private readonly timers: RelayTimers;

  constructor(private readonly post: (m: ToDashboard) => void, o: RelayOptions = {}) {
    this.intervalMs = o.intervalMs ?? 100;
    this.maxPerFlush = o.maxPerFlush ?? 3;
    this.maxRecords = o.maxRecordsPerMessage ?? 5000;
    this.timers = o.timers ?? realTimers;
  }

  get pending(): number {
    return this.queue.length;
  }

  send(message: ToDashboard): void {
    if (this.disposed) return;
    const last = this.queue[this.queue.length - 1];
    if (message.type === 'records') {
      if (message.records.length === 0) return;
      if (last?.type === 'records' && last.runId === message.runId && last.records.length < this.maxRecords) {
        const room = this.maxRecords - last.records.length;
        last.records.push(...message.records.slice(0, room));
        if (message.records.length > room) this.send({ ...message, records: message.records.slice(room) });
        this.schedule();
        return;
      }
      // Own the array: merging later must not mutate the caller's.
      for (let i = 0; i < message.records.length; i += this.maxRecords) {
        this.queue.push({ type: 'records', runId: message.runId, records: message.records.slice(i, i + this.maxRecords) });
      }
    } else if (message.type === 'connection' && last?.type === 'connection' && last.runId === message.runId) {
      this.queue[this.queue.length - 1] = message; // only the latest connection state matters
    } else {
      this.queue.push(message);
    }
    this.schedule();
  }

  /** Drops everything queued (a panel about to get a full replay does not need the partial one). */
  clear(): void {
    this.queue.length = 0;
  }

  dispose(): void {
    this.disposed = true;
    this.queue.length = 0;
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer !== undefined || this.queue.length === 0) return;
    const wait = Math.max(0, this.lastFlush + this.intervalMs - this.timers.now());
    this.timer = this.timers.setTimeout(() => this.flush(), wait);
  }

  private flush(): void {
    this.timer = undefined;
    if (this.disposed) return;
    this.lastFlush = this.timers.now();
    for (const m of this.queue.splice(0, this.maxPerFlush)) this.post(m);
    this.schedule();
  }
}

/**
 * What the WebSocket server reads records from. The run log implements it over its NDJSON file and an
 * in-memory tail; `MemoryRecordSource` keeps everything in memory, for tests and tools that have no run
 * directory.
 */
import type { LogRecord, NewLogRecord } from '../../common/protocol.js';

export interface RecordSource {
  lastSeq(): number;
  /** Records with seq > afterSeq, in order, at most `limit` (to replay in chunks). */
  readAfter(afterSeq: number, limit: number): LogRecord[];
  /** Called for every new record, in seq order; returns an unsubscribe function. */
  subscribe(listener: (r: LogRecord) => void): () => void;
}

export class MemoryRecordSource implements RecordSource {
  private readonly records: LogRecord[] = [];
  private readonly listeners = new Set<(r: LogRecord) => void>();

  lastSeq(): number {
    return this.records.length;
  }

  /** Stamps the record with the next seq (dense from 1, like the run log) and tells every listener. */
  append(record: NewLogRecord): LogRecord {
    const stamped = { ...record, seq: this.records.length + 1, t: Date.now() } as LogRecord;
    this.records.push(stamped);
    for (const listener of this.listeners) listener(stamped);
    return stamped;
  }

  readAfter(afterSeq: number, limit: number): LogRecord[] {
    // Seqs are dense from 1, so seq s is at index s − 1.
    const from = Math.max(0, Math.floor(afterSeq));
    return this.records.slice(from, from + Math.max(0, limit));
  }

  subscribe(listener: (r: LogRecord) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

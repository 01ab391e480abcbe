/**
 * The run log: an append-only NDJSON file, one `LogRecord` per line, every record stamped with a seq
 * that increases by one. It is the single source of truth: the WebSocket server replays from it, a
 * finished run opens from it, and a resumed run appends to it.
 *
 * A process killed mid-write leaves a torn last line; readers skip it, and reopening for append cuts it
 * off so the next record starts on a clean line. Records are kept in memory only for a recent window;
 * older ones are read back from the file by their byte offset.
 */
import { closeSync, existsSync, fstatSync, ftruncateSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { MuonscopeError } from '../errors.js';
import { validateLogRecord, type LogRecord, type NewLogRecord } from '../protocol.js';

export interface ParsedLog {
  records: LogRecord[];
  /** Byte offset of each record's line, parallel to `records`. */
  offsets: number[];
  /** Bytes of complete, valid lines: where the next append belongs. */
  validBytes: number;
  /** Lines skipped: a torn last line, or lines that fail validation (with their line numbers). */
  skipped: { line: number; reason: string }[];
}

/** Parses a log's bytes; a torn or invalid line is reported and skipped, never fatal. */
export function parseRunLog(bytes: Buffer): ParsedLog {
  const records: LogRecord[] = [];
  const offsets: number[] = [];
  const skipped: ParsedLog['skipped'] = [];
  let start = 0;
  let line = 0;
  let validBytes = 0;
  while (start < bytes.length) {
    line++;
    const nl = bytes.indexOf(0x0a, start);
    if (nl < 0) {
      skipped.push({ line, reason: 'torn last line (no newline): the writer was interrupted' });
      break;
    }
    const text = bytes.toString('utf8', start, nl);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      skipped.push({ line, reason: 'not valid JSON' });
      start = nl + 1;
      continue;
    }
    const result = validateLogRecord(parsed);
    const previous = records.length ? records[records.length - 1].seq : 0;
    if (!result.ok) skipped.push({ line, reason: `invalid record: ${result.issues[0].path} ${result.issues[0].message}` });
    else if (result.value.seq <= previous) skipped.push({ line, reason: `seq ${result.value.seq} does not follow ${previous}` });
    else {
      records.push(result.value);
      offsets.push(start);
      validBytes = nl + 1;
    }
    start = nl + 1;
  }
  return { records, offsets, validBytes, skipped };
}

export function readRunLog(path: string): ParsedLog {
  if (!existsSync(path)) throw new MuonscopeError('INVALID_ARGUMENT', `no run log at ${path}`, { path });
  return parseRunLog(readFileSync(path));
}

/** How many recent records stay in memory for live clients; older ones are re-read from disk. */
const MEMORY_WINDOW = 20000;

/** Also what the trainer's WebSocket server replays from (its RecordSource, matched by shape). */
export class RunLog {
  private readonly fd: number;
  private readonly offsets: number[] = [];
  private readonly recent: LogRecord[] = [];
  private readonly listeners = new Set<(r: LogRecord) => void>();
  private seq = 0;
  private size = 0;
  private closed = false;

  /** Opens (creating or continuing) the log at `path`; a torn tail is cut off before appending. */
  constructor(readonly path: string) {
    if (existsSync(path)) {
      const parsed = readRunLog(path);
      const last = parsed.records.length ? parsed.records[parsed.records.length - 1].seq : 0;
      if (last !== parsed.records.length) {
        // Only a torn last line is expected; a hole in the middle means the file was damaged, and
        // appending after it would break the seq → offset mapping replay relies on.
        throw new MuonscopeError('INVALID_STATE', `run log ${path} has gaps (${parsed.records.length} records up to seq ${last}); it can be read but not continued`, { skipped: parsed.skipped });
      }
      this.fd = openSync(path, 'r+');
      ftruncateSync(this.fd, parsed.validBytes);
      this.size = parsed.validBytes;
      this.offsets.push(...parsed.offsets);
      this.seq = parsed.records.length ? parsed.records[parsed.records.length - 1].seq : 0;
      this.recent.push(...parsed.records.slice(-MEMORY_WINDOW));
    } else {
      this.fd = openSync(path, 'w+');
    }
  }

  lastSeq(): number {
    return this.seq;
  }

  /** Stamps, validates and appends one record, then tells every subscriber. */
  append(record: NewLogRecord): LogRecord {
    if (this.closed) throw new MuonscopeError('INVALID_STATE', `run log ${this.path} is closed`);
    const stamped = { ...record, seq: this.seq + 1, t: Date.now() } as LogRecord;
    const check = validateLogRecord(stamped);
    if (!check.ok) {
      throw new MuonscopeError('INVALID_ARGUMENT', `refusing to log an invalid ${record.kind} record: ${check.issues.map((i) => `${i.path} ${i.message}`).join('; ')}`);
    }
    const line = Buffer.from(JSON.stringify(stamped) + '\n', 'utf8');
    writeSync(this.fd, line, 0, line.length, this.size);
    this.offsets.push(this.size);
    this.size += line.length;
    this.seq = stamped.seq;
    this.recent.push(stamped);
    if (this.recent.length > MEMORY_WINDOW) this.recent.splice(0, this.recent.length - MEMORY_WINDOW);
    for (const listener of this.listeners) listener(stamped);
    return stamped;
  }

  readAfter(afterSeq: number, limit: number): LogRecord[] {
    const from = Math.max(0, afterSeq);
    if (from >= this.seq || limit <= 0) return [];
    const firstInMemory = this.recent.length ? this.recent[0].seq : this.seq + 1;
    if (from + 1 >= firstInMemory) {
      const i = from + 1 - firstInMemory;
      return this.recent.slice(i, i + limit);
    }
    // Seqs are dense from 1, so seq s lives at offsets[s − 1].
    const startSeq = from + 1;
    const endSeq = Math.min(this.seq, from + limit);
    const start = this.offsets[startSeq - 1];
    const end = endSeq < this.offsets.length ? this.offsets[endSeq] : this.size;
    const buf = Buffer.alloc(end - start);
    readSync(this.fd, buf, 0, buf.length, start);
    return parseRunLog(buf).records;
  }

  subscribe(listener: (r: LogRecord) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Bytes on disk, for the run's summary. */
  get bytes(): number {
    return this.closed ? this.size : fstatSync(this.fd).size;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    closeSync(this.fd);
  }
}

/**
 * Follows a run log as it grows, reading only the bytes appended since the last read, asynchronously.
 * The runs tree summarises every run folder every few seconds; re-reading and re-validating whole logs
 * (tens of MB for a long run) on the extension host's thread made each refresh cost more than the runs it
 * listed. A tail keeps its byte offset and parses only complete lines past it: a line the writer has not
 * finished stays unread until its newline arrives. A log that shrank or was replaced starts over.
 */
import { open, stat } from 'node:fs/promises';
import type { LogRecord } from '../protocol.js';
import { parseRunLog } from './log.js';

export interface TailRead {
  /** Records in complete lines appended since the last read (invalid lines skipped, as parseRunLog does). */
  records: LogRecord[];
  /** True when the file shrank or was replaced, so the caller must drop what it folded before. */
  restarted: boolean;
}

export class LogTail {
  private offset = 0;
  private identity: { dev: number; ino: number } | undefined;

  constructor(readonly path: string) {}

  /** Bytes consumed so far (complete lines only). */
  get bytesRead(): number {
    return this.offset;
  }

  /** Reads what was appended since the last call; a missing file reads as nothing new. */
  async read(): Promise<TailRead> {
    let st;
    try {
      st = await stat(this.path);
    } catch {
      return { records: [], restarted: false };
    }
    let restarted = false;
    const replaced = this.identity && (this.identity.dev !== st.dev || this.identity.ino !== st.ino);
    if (replaced || st.size < this.offset) {
      this.offset = 0;
      restarted = true;
    }
    this.identity = { dev: st.dev, ino: st.ino };
    if (st.size === this.offset) return { records: [], restarted };
    const handle = await open(this.path, 'r');
    try {
      const buf = Buffer.alloc(st.size - this.offset);
      const { bytesRead } = await handle.read(buf, 0, buf.length, this.offset);
      const chunk = buf.subarray(0, bytesRead);
      const complete = chunk.lastIndexOf(0x0a) + 1;
      if (complete === 0) return { records: [], restarted };
      this.offset += complete;
      return { records: parseRunLog(chunk.subarray(0, complete)).records, restarted };
    } finally {
      await handle.close();
    }
  }
}

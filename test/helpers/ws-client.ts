// A minimal protocol client for tests: connects with the token, subscribes, collects records, and
// sends commands that resolve with their ack or error reply.
import WebSocket from 'ws';
import type { Command, LogRecord, ServerMessage } from '../../common/protocol.js';
import { WAIT_MS, waitUntil } from './wait.js';

type Reply = Extract<ServerMessage, { type: 'ack' | 'error' }>;

export class TestClient {
  readonly records: LogRecord[] = [];
  private readonly pending = new Map<string, (r: Reply) => void>();
  private nextId = 1;
  private replayed: Promise<void>;

  private constructor(readonly ws: WebSocket) {
    let markReplayed!: () => void;
    this.replayed = new Promise((r) => (markReplayed = r));
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data)) as ServerMessage;
      if (msg.type === 'events') this.records.push(...msg.records);
      else if (msg.type === 'replayed') markReplayed();
      else if (msg.type === 'ack' || msg.type === 'error') {
        const id = msg.id;
        if (id && this.pending.has(id)) {
          this.pending.get(id)!(msg);
          this.pending.delete(id);
        }
      }
    });
  }

  static async connect(url: string, token: string, afterSeq = 0): Promise<TestClient> {
    const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${token}` } });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const client = new TestClient(ws);
    ws.send(JSON.stringify({ type: 'subscribe', afterSeq }));
    await client.replayed;
    return client;
  }

  command(command: Command, source = 'test'): Promise<Reply> {
    const id = `c${this.nextId++}`;
    return this.raw(JSON.stringify({ type: 'command', id, command, source }), id);
  }

  /** Sends a raw frame; with an id, resolves with the reply that carries it. */
  raw(frame: string, id?: string): Promise<Reply> {
    const reply = new Promise<Reply>((resolve) => {
      if (id) this.pending.set(id, resolve);
    });
    this.ws.send(frame);
    return reply;
  }

  /** Waits until a record satisfies `pred`; on timeout, says what was awaited and the last record seen. */
  async waitFor(what: string, pred: (r: LogRecord) => boolean, timeoutMs = WAIT_MS): Promise<LogRecord> {
    const seen = await waitUntil(what, () => ({ hit: this.records.find(pred), records: this.records.length, last: this.records.at(-1) }), { until: (s) => s.hit !== undefined, timeoutMs });
    return seen.hit!;
  }

  close(): void {
    this.ws.close();
  }
}

/**
 * One connected client: its subscription (replay, then live records), its backpressure, and its frames.
 *
 * Delivery guarantee. After `subscribe {afterSeq}` the client receives every record with seq > afterSeq
 * exactly once and in order: first the replay, read from the source in chunks, then `replayed`, then live
 * records. Live records start being queued the moment the subscription is taken (before the first read),
 * and the queue is pruned of whatever the replay has already sent, so a record appended during the
 * replay is neither lost nor sent twice.
 *
 * The one exception is backpressure. While the client's socket buffer is above `highWaterBytes`, nothing
 * more is written to it; queued `spectra` (per layer) and `layer_stats` records are coalesced to the latest
 * one per key, and the superseded ones are never sent, so the client sees seq gaps at exactly those
 * records. Every other record is kept. Clients must therefore treat seqs as increasing, not dense; a
 * client that wants the full history of spectra reads the run log. The queue is bounded: all scalar
 * records plus one record per coalescing key; past `maxBacklogRecords` scalar records the client is closed
 * with 1013 and can reconnect and replay from the log.
 */
import { WebSocket, type RawData } from 'ws';
import { parseClientMessage, type ClientMessage, type ServerMessage } from '../../common/protocol.js';
import { Outbox, toOutgoing, type Outgoing, type OutboxStats } from './outbox.js';
import type { RecordSource } from './record-source.js';

/** Records per replay read and per `events` message. */
const CHUNK_RECORDS = 500;
/** A message holds at most this much JSON (or one record, if that alone is larger). */
const MAX_MESSAGE_CHARS = 1 << 20;
/** Live records arriving within this window go out in one message. */
const LIVE_BATCH_MS = 10;
/** ws has no 'drain' event of its own, so a congested client's buffer is polled. */
const DRAIN_POLL_MS = 20;

export type CommandMessage = Extract<ClientMessage, { type: 'command' }>;

export interface SessionOptions {
  id: string;
  ws: WebSocket;
  source: RecordSource;
  highWaterBytes: number;
  maxBacklogRecords: number;
  onCommand: (session: ClientSession, msg: CommandMessage) => void;
  log: (line: string) => void;
}

export interface SessionStats {
  id: string;
  phase: ClientSession['phase'];
  congested: boolean;
  bufferedAmount: number;
  /** Records written to the socket so far. */
  sentRecords: number;
  lastSentSeq: number;
  pending: OutboxStats;
}

export class ClientSession {
  readonly id: string;
  phase: 'idle' | 'replaying' | 'live' | 'closed' = 'idle';
  private readonly ws: WebSocket;
  private readonly opts: SessionOptions;
  private readonly outbox = new Outbox();
  /** Replay records read but not yet written (at most one chunk). */
  private replayChunk: Outgoing[] = [];
  private replayThrough = 0;
  /** Highest seq the client has: written to its socket, or named as its afterSeq. */
  private cursor = 0;
  /** Highest seq queued or written: anything at or below it is a duplicate. */
  private lastQueued = 0;
  private congested = false;
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private sentRecords = 0;
  private readonly closed: Promise<void>;

  constructor(opts: SessionOptions) {
    this.opts = opts;
    this.id = opts.id;
    this.ws = opts.ws;
    this.closed = new Promise((resolve) => this.ws.once('close', () => resolve()));
    this.ws.on('close', () => this.dispose());
    this.ws.on('error', (e) => opts.log(`client ${this.id}: ${e.message}`));
    this.ws.on('message', (data, isBinary) => {
      // A throw here would escape ws's event handler and take the trainer down with it.
      try {
        this.onFrame(data, isBinary);
      } catch (e) {
        opts.log(`client ${this.id}: frame handling failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        this.send({ type: 'error', code: 'INTERNAL', message: 'the server could not handle this frame' });
      }
    });
  }

  /** Sends a control message (hello, ack, error) now, ahead of any queued records. */
  send(msg: ServerMessage): void {
    this.write(JSON.stringify(msg));
  }

  /** A new record from the source (serialized once, shared by all sessions). */
  offer(item: Outgoing): void {
    if ((this.phase !== 'replaying' && this.phase !== 'live') || item.seq <= this.lastQueued) return;
    this.lastQueued = item.seq;
    this.outbox.push(item);
    if (this.outbox.scalars > this.opts.maxBacklogRecords) {
      void this.close(1013, `too slow; reconnect with afterSeq ${this.cursor}`);
      this.opts.log(`client ${this.id} closed: more than ${this.opts.maxBacklogRecords} records waiting`);
      return;
    }
    if (this.phase !== 'live' || this.congested) return;
    // A burst within one tick must not pile up unbounded before the batching timer fires.
    if (this.outbox.bytes > this.opts.highWaterBytes) this.pump();
    else if (!this.timer) this.timer = setTimeout(this.pump, LIVE_BATCH_MS);
  }

  /** Closes the socket; resolves once it is closed, cutting it off if the client does not answer in time. */
  async close(code: number, reason: string, graceMs = 2000): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    // A live client gets what is still waiting for the batching timer (the run's final records, when the
    // trainer shuts down) before the close frame, which ws sends after everything queued; not a client
    // being cut off for falling behind.
    if (this.phase === 'live' && code !== 1013) {
      while (!this.outbox.empty) this.writeRecords(this.outbox.take(CHUNK_RECORDS, MAX_MESSAGE_CHARS));
    }
    this.dispose();
    this.ws.close(code, reason);
    const cutoff = setTimeout(() => this.ws.terminate(), graceMs);
    await this.closed;
    clearTimeout(cutoff);
  }

  stats(): SessionStats {
    return {
      id: this.id,
      phase: this.phase,
      congested: this.congested,
      bufferedAmount: this.ws.bufferedAmount,
      sentRecords: this.sentRecords,
      lastSentSeq: this.cursor,
      pending: this.outbox.snapshot(),
    };
  }

  private onFrame(data: RawData, isBinary: boolean): void {
    if (this.phase === 'closed') return;
    if (isBinary) {
      this.send({ type: 'error', code: 'BAD_FRAME', message: 'binary frames are not accepted; send JSON text' });
      return;
    }
    const text = (Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)).toString('utf8');
    const parsed = parseClientMessage(text);
    if (!parsed.ok) {
      this.send(parsed.error);
      return;
    }
    const msg = parsed.message;
    if (msg.type === 'command') this.opts.onCommand(this, msg);
    else this.subscribe(msg.afterSeq);
  }

  private subscribe(afterSeq: number): void {
    if (this.phase !== 'idle') {
      this.send({ type: 'error', code: 'BAD_MESSAGE', message: 'already subscribed; reconnect to replay from another seq' });
      return;
    }
    // From here on live records are queued (offer), so none can slip between the replay's last read and
    // the switch to live.
    this.phase = 'replaying';
    this.cursor = this.lastQueued = afterSeq;
    // The replay ends at the log's end as of now; later records are already being queued as live ones.
    // Without this bound a replay chasing a fast writer would never finish.
    this.replayThrough = this.opts.source.lastSeq();
    this.immediate = setImmediate(this.pump);
  }

  private readonly pump = (): void => {
    this.cancelScheduled();
    if (this.congested) return;
    if (this.phase === 'replaying') this.replayStep();
    else if (this.phase === 'live') this.flushLive();
  };

  private replayStep(): void {
    if (this.replayChunk.length === 0) {
      let last = this.cursor;
      for (const r of this.opts.source.readAfter(this.cursor, CHUNK_RECORDS)) {
        if (r.seq > this.replayThrough) break;
        // A source must return increasing seqs; anything else is skipped rather than sent twice.
        if (r.seq > last) {
          this.replayChunk.push(toOutgoing(r));
          last = r.seq;
        }
      }
      if (this.replayChunk.length === 0) return this.finishReplay();
    }
    while (this.replayChunk.length > 0) {
      if (this.ws.bufferedAmount > this.opts.highWaterBytes) return this.congest();
      const batch = takeBatch(this.replayChunk);
      this.writeRecords(batch);
      this.outbox.dropThrough(this.cursor);
      if (this.cursor > this.lastQueued) this.lastQueued = this.cursor;
    }
    // Yield between chunks: a long replay must not hold up other clients or the training loop.
    this.immediate = setImmediate(this.pump);
  }

  private finishReplay(): void {
    this.send({ type: 'replayed', throughSeq: this.cursor });
    this.phase = 'live';
    this.flushLive();
  }

  private flushLive(): void {
    while (!this.outbox.empty) {
      if (this.ws.bufferedAmount > this.opts.highWaterBytes) return this.congest();
      this.writeRecords(this.outbox.take(CHUNK_RECORDS, MAX_MESSAGE_CHARS));
    }
  }

  private congest(): void {
    this.congested = true;
    this.outbox.startCoalescing();
    const poll = () => {
      this.timer = null;
      if (this.ws.bufferedAmount > this.opts.highWaterBytes / 2) {
        this.timer = setTimeout(poll, DRAIN_POLL_MS);
        return;
      }
      this.congested = false;
      this.outbox.stopCoalescing();
      this.pump();
    };
    this.timer = setTimeout(poll, DRAIN_POLL_MS);
  }

  private cancelScheduled(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = null;
    this.immediate = null;
  }

  private writeRecords(items: Outgoing[]): void {
    if (items.length === 0) return;
    this.write(`{"type":"events","records":[${items.map((i) => i.json).join(',')}]}`);
    this.sentRecords += items.length;
    this.cursor = items[items.length - 1].seq;
  }

  private write(text: string): void {
    // Send failures surface as the socket's 'error' and 'close' events, which end the session.
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
  }

  /** Stops all work and frees the queue; the socket is closing or closed. */
  private dispose(): void {
    this.phase = 'closed';
    this.cancelScheduled();
    this.replayChunk = [];
    this.outbox.clear();
  }
}

/** Takes the front of `items` that fits one message. */
function takeBatch(items: Outgoing[]): Outgoing[] {
  let n = 0;
  let chars = 0;
  while (n < items.length && n < CHUNK_RECORDS && (n === 0 || chars + items[n].json.length <= MAX_MESSAGE_CHARS)) chars += items[n++].json.length;
  return items.splice(0, n);
}

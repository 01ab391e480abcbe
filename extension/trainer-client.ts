/**
 * The extension host's one WebSocket client of a trainer. It authenticates with the token, subscribes
 * after the last seq the run's history holds, validates every frame with the protocol module, and on a
 * dropped connection reconnects with backoff and subscribes again after the last seq it saw, so nothing
 * is lost and nothing is counted twice (RunHistory drops the overlap).
 */
import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import type { CONNECTION_STATES } from '../common/dashboard-messages.js';
import { validateServerMessage, type Command, type LogRecord, type ServerMessage } from '../common/protocol.js';

export type ConnectionState = (typeof CONNECTION_STATES)[number];
export type CommandReply = Extract<ServerMessage, { type: 'ack' | 'error' }>;
export type Hello = Extract<ServerMessage, { type: 'hello' }>;

export interface TrainerClientHandlers {
  onHello(hello: Hello): void;
  onRecords(records: LogRecord[]): void;
  onConnection(state: ConnectionState, detail?: string): void;
  /** Problems worth a line in the run's output channel (bad frames, refused connections). */
  onLog(line: string): void;
}

export interface TrainerClientOptions {
  /** Delays before successive reconnect attempts; the last one repeats. */
  backoffMs?: readonly number[];
  commandTimeoutMs?: number;
}

const TERMINAL_STATES = new Set(['finished', 'stopped', 'crashed']);

/** Why a connection attempt failed, in the words a notification uses. */
export type ConnectFailureKind = 'unauthorised' | 'refused' | 'timed out' | 'unreachable' | 'rejected' | 'failed';
export interface ConnectFailure {
  kind: ConnectFailureKind;
  message: string;
}

/** Classifies a socket error (before the handshake completed) for the user. */
export function classifyConnectError(url: string, e: Error & { code?: string }): ConnectFailure {
  const code = e.code ?? '';
  if (code === 'ECONNREFUSED') return { kind: 'refused', message: `nothing is listening at ${url} (connection refused)` };
  if (code === 'ETIMEDOUT' || /timed out/i.test(e.message)) return { kind: 'timed out', message: `no answer from ${url} (timed out)` };
  if (code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EAI_AGAIN') return { kind: 'unreachable', message: `${url} cannot be reached (${code})` };
  return { kind: 'failed', message: `could not connect to ${url}: ${e.message}` };
}

/** Classifies an HTTP answer to the upgrade request. */
export function classifyUpgradeResponse(url: string, status: number | undefined): ConnectFailure {
  if (status === 401) return { kind: 'unauthorised', message: `the trainer at ${url} refused the token (HTTP 401: wrong token)` };
  return { kind: 'rejected', message: `the trainer at ${url} refused the connection (HTTP ${status ?? '?'})` };
}

export class TrainerClient {
  private ws: WebSocket | undefined;
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  private runEnded = false;
  private state: ConnectionState = 'connecting';
  private everLive = false;
  /** The last failed connection attempt, until a connection succeeds. */
  lastFailure: ConnectFailure | undefined;
  private readonly pending = new Map<string, { resolve: (r: CommandReply) => void; timer: ReturnType<typeof setTimeout> }>();
  private readonly backoff: readonly number[];
  private readonly commandTimeoutMs: number;

  constructor(
    readonly url: string,
    private readonly token: string,
    /** The last seq the run's history holds, read at every (re)subscribe. */
    private readonly lastSeq: () => number,
    private readonly handlers: TrainerClientHandlers,
    o: TrainerClientOptions = {},
  ) {
    this.backoff = o.backoffMs ?? [250, 500, 1000, 2000, 5000];
    this.commandTimeoutMs = o.commandTimeoutMs ?? 15000;
  }

  get connectionState(): ConnectionState {
    return this.state;
  }

  /** True once the trainer has accepted this client at least once (the token and URL are right). */
  get hasConnected(): boolean {
    return this.everLive;
  }

  start(): void {
    this.connect();
  }

  /** Sends a command; resolves with the trainer's ack or error (a local error if it cannot be sent). */
  command(command: Command, source = 'vscode'): Promise<CommandReply> {
    const id = randomUUID();
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.resolve({ type: 'error', id, code: this.runEnded ? 'RUN_ENDED' : 'INTERNAL', message: `not connected to the trainer (${this.state})` });
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve({ type: 'error', id, code: 'INTERNAL', message: `no answer from the trainer within ${this.commandTimeoutMs / 1000} s` });
      }, this.commandTimeoutMs);
      this.pending.set(id, { resolve, timer });
      ws.send(JSON.stringify({ type: 'command', id, command, source }));
    });
  }

  /** The run is over (its trainer exited): stop reconnecting once the socket closes. */
  markEnded(): void {
    this.runEnded = true;
    if (!this.ws || this.ws.readyState === WebSocket.CLOSED) this.finish('ended');
  }

  dispose(): void {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.ws?.removeAllListeners();
    this.ws?.on('error', () => {});
    this.ws?.terminate();
    this.ws = undefined;
    this.failPending('client closed');
  }

  private setState(state: ConnectionState, detail?: string): void {
    this.state = state;
    this.handlers.onConnection(state, detail);
  }

  private connect(): void {
    if (this.closed) return;
    this.setState('connecting');
    const ws = new WebSocket(this.url, { headers: { Authorization: `Bearer ${this.token}` }, perMessageDeflate: false, handshakeTimeout: 10000 });
    this.ws = ws;
    let refused: ConnectFailure | undefined;
    let opened = false;
    ws.on('open', () => {
      opened = true;
      this.attempt = 0;
      ws.send(JSON.stringify({ type: 'subscribe', afterSeq: this.lastSeq() }));
    });
    ws.on('unexpected-response', (_req, res) => {
      refused = classifyUpgradeResponse(this.url, res.statusCode);
      ws.terminate();
    });
    ws.on('message', (data, isBinary) => this.onFrame(isBinary ? '' : String(data)));
    ws.on('error', (e) => {
      if (!opened && !refused) this.lastFailure = classifyConnectError(this.url, e);
      this.handlers.onLog(`connection error: ${e.message}`);
    });
    ws.on('close', () => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      this.failPending('connection closed');
      if (refused) {
        // A refusal is an answer: retrying with the same token cannot help.
        this.lastFailure = refused;
        this.finish('offline', refused.message);
      } else if (this.runEnded) this.finish('ended');
      else this.scheduleReconnect();
    });
  }

  private onFrame(frame: string): void {
    let json: unknown;
    try {
      json = JSON.parse(frame);
    } catch {
      this.handlers.onLog('ignored a frame that is not JSON');
      return;
    }
    const checked = validateServerMessage(json);
    if (!checked.ok) {
      this.handlers.onLog(`ignored an invalid message: ${checked.issues.map((i) => `${i.path} ${i.message}`).join('; ')}`);
      return;
    }
    const msg = checked.value;
    switch (msg.type) {
      case 'hello':
        this.handlers.onHello(msg);
        break;
      case 'events':
        if (msg.records.some((r) => r.kind === 'state' && TERMINAL_STATES.has(r.state))) this.runEnded = true;
        this.handlers.onRecords(msg.records);
        break;
      case 'replayed':
        this.everLive = true;
        this.lastFailure = undefined;
        this.setState('live');
        break;
      case 'ack':
      case 'error': {
        const waiting = msg.id ? this.pending.get(msg.id) : undefined;
        if (waiting && msg.id) {
          clearTimeout(waiting.timer);
          this.pending.delete(msg.id);
          waiting.resolve(msg);
        } else if (msg.type === 'error') {
          this.handlers.onLog(`trainer error ${msg.code}: ${msg.message}`);
        }
        break;
      }
    }
  }

  private scheduleReconnect(): void {
    if (this.closed) return;
    const delay = this.backoff[Math.min(this.attempt, this.backoff.length - 1)];
    this.attempt++;
    this.setState('offline', `${this.lastFailure ? `${this.lastFailure.message}; ` : ''}reconnecting in ${delay} ms`);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  private finish(state: ConnectionState, detail?: string): void {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.setState(state, detail);
  }

  private failPending(why: string): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.resolve({ type: 'error', id, code: 'INTERNAL', message: why });
    }
    this.pending.clear();
  }
}

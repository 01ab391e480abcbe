/**
 * The trainer's WebSocket server: the one way run data leaves the process and commands come in.
 * Local and private by default (127.0.0.1, a random token, Origin checked); every client gets the
 * records it asked for from the run log's seq on (see ClientSession for the delivery guarantee), and
 * commands from all clients reach the trainer through one ordered queue.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { MuonscopeError } from '../../common/errors.js';
import { MAX_CLIENT_FRAME_BYTES, PROTOCOL_VERSION, type LogRecord } from '../../common/protocol.js';
import { isLoopbackHost, originAllowed, ownOrigins, presentedToken, tokenMatches } from './auth.js';
import { ClientSession, type CommandMessage, type SessionStats } from './client-session.js';
import { CommandQueue, type CommandHandler } from './commands.js';
import { toOutgoing, type Outgoing } from './outbox.js';
import type { RecordSource } from './record-source.js';

export { generateToken } from './auth.js';
export type { CommandHandler, CommandResult, IncomingCommand } from './commands.js';

export interface ServerOptions {
  /** 127.0.0.1 unless given; anything reachable from other machines is logged as a warning. */
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  token: string;
  /** Browser origins allowed besides the trainer's own (e.g. a webview's). */
  allowedOrigins?: string[];
  runId: string;
  runDir: string;
  source: RecordSource;
  onCommand: CommandHandler;
  log?: (line: string) => void;
  /** Per-client send buffer above which spectra and layer_stats are coalesced (default 4 MB). */
  highWaterBytes?: number;
  /** Scalar records queued for one congested client before it is closed with 1013 (default 100k). */
  maxBacklogRecords?: number;
  /** Tried first for plain HTTP requests; returns true when it answered. It does its own auth. */
  httpHandler?: (req: IncomingMessage, res: ServerResponse) => boolean;
}

export interface ServerDebugStats {
  commandsReceived: number;
  clients: SessionStats[];
}

export interface TrainerServer {
  /** ws://HOST:PORT, where a client on this machine reaches the server. */
  url: string;
  port: number;
  clients(): number;
  /** For tests and diagnostics: what each client has pending. */
  debugStats(): ServerDebugStats;
  /** Closes every socket (1001) and stops listening. */
  close(): Promise<void>;
}

const DEFAULT_HIGH_WATER_BYTES = 4 * 1024 * 1024;
const DEFAULT_MAX_BACKLOG_RECORDS = 100_000;

export async function startServer(options: ServerOptions): Promise<TrainerServer> {
  const host = options.host ?? '127.0.0.1';
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const highWaterBytes = options.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES;
  const maxBacklogRecords = options.maxBacklogRecords ?? DEFAULT_MAX_BACKLOG_RECORDS;
  if (typeof options.token !== 'string' || options.token.length === 0) throw new MuonscopeError('INVALID_ARGUMENT', 'the server needs a non-empty token');
  if (!(highWaterBytes > 0) || !(maxBacklogRecords > 0)) throw new MuonscopeError('INVALID_ARGUMENT', 'highWaterBytes and maxBacklogRecords must be positive', { highWaterBytes, maxBacklogRecords });

  const sessions = new Set<ClientSession>();
  const commands = new CommandQueue(options.onCommand, log);
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: MAX_CLIENT_FRAME_BYTES, clientTracking: false });
  let origins: ReadonlySet<string> = new Set();
  let nextClient = 1;
  let closing: Promise<void> | undefined;

  const http = createServer((req, res) => {
    try {
      if (options.httpHandler?.(req, res)) return;
    } catch (e) {
      log(`http handler failed for ${req.method} ${req.url}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end('internal error');
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok');
    else res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
  });

  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // A keep-alive connection can still ask to upgrade while the server shuts down.
    if (closing) return void socket.destroy();
    if (!tokenMatches(presentedToken(req), options.token)) return refuse(socket, 401, 'Unauthorized');
    if (!originAllowed(req.headers.origin, origins)) return refuse(socket, 403, 'Forbidden');
    wss.handleUpgrade(req, socket, head, connect);
  });

  const onCommand = (session: ClientSession, msg: CommandMessage) =>
    commands.enqueue({ id: msg.id, command: msg.command, source: msg.source ?? session.id }, session.id, (reply) => session.send(reply));

  function connect(ws: WebSocket): void {
    const session = new ClientSession({ id: `ws-${nextClient++}`, ws, source: options.source, highWaterBytes, maxBacklogRecords, onCommand, log });
    sessions.add(session);
    ws.once('close', () => sessions.delete(session));
    session.send({ type: 'hello', protocol: PROTOCOL_VERSION, runId: options.runId, runDir: options.runDir, lastSeq: options.source.lastSeq() });
  }

  // One subscription for all clients: each record is serialized once, and only if someone is listening.
  const unsubscribe = options.source.subscribe((record: LogRecord) => {
    let item: Outgoing | undefined;
    for (const session of sessions) {
      if (session.phase !== 'replaying' && session.phase !== 'live') continue;
      try {
        session.offer((item ??= toOutgoing(record)));
      } catch (e) {
        // This runs inside the trainer's log append: a client's failure must never reach the training loop.
        log(`client ${session.id}: could not queue record ${record.seq}: ${String(e)}`);
      }
    }
  });

  try {
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(options.port ?? 0, host, () => {
        http.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    unsubscribe();
    throw new MuonscopeError('INVALID_ARGUMENT', `cannot listen on ${host}:${options.port ?? 0}: ${e instanceof Error ? e.message : String(e)}`, { host, port: options.port });
  }
  http.on('error', (e) => log(`server error: ${e.message}`));

  const address = http.address();
  const port = typeof address === 'object' && address ? address.port : (options.port ?? 0);
  origins = new Set([...(options.allowedOrigins ?? []).map((o) => o.toLowerCase()), ...ownOrigins(host, port)]);
  if (!isLoopbackHost(host)) {
    log(`warning: the trainer is listening on ${host}:${port}, reachable from the network and protected only by its token`);
  }
  // A wildcard bind is reached locally through loopback.
  const urlHost = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;

  return {
    url: `ws://${urlHost}:${port}`,
    port,
    clients: () => sessions.size,
    debugStats: () => ({ commandsReceived: commands.received, clients: [...sessions].map((s) => s.stats()) }),
    close: () =>
      (closing ??= (async () => {
        unsubscribe();
        const stopped = new Promise<void>((resolve) => http.close(() => resolve()));
        await Promise.all([...sessions].map((s) => s.close(1001, 'trainer shutting down')));
        http.closeAllConnections();
        await stopped;
      })()),
  };
}

/** Answers a refused upgrade with a plain HTTP status and closes the socket; no WebSocket is created. */
function refuse(socket: Duplex, status: 401 | 403, text: string): void {
  socket.on('error', () => socket.destroy());
  socket.once('finish', () => socket.destroy());
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${text.length}\r\n\r\n${text}`);
}

/**
 * The channel's transport (docs/python.md §3): a TCP server on loopback that speaks NDJSON, lets one
 * process in at a time, and only after a first line that is a hello with this run's token. What the
 * messages mean is the host session's business; this file frames lines, authenticates and dispatches.
 */
import { createServer, type Socket } from 'node:net';
import { MuonscopeError } from '../../common/errors.js';
import { tokenMatches } from '../server/auth.js';
import { CHANNEL_PROTOCOL, MAX_CHANNEL_LINE_BYTES, validateHello, validatePythonMessage, type ChannelErrorCode, type Hello, type HostMessage, type PythonMessage } from './channel-messages.js';

/** Splits a byte stream into lines; a line longer than `maxBytes` is an error, not a silent cut. */
export class LineSplitter {
  private parts: Buffer[] = [];
  private pending = 0;

  constructor(private readonly maxBytes: number) {}

  /** The complete lines in `chunk` (with what came before it), without their newlines. Throws on an overlong line. */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
      if (this.pending + nl - start > this.maxBytes) throw new MuonscopeError('INVALID_ARGUMENT', `a line of more than ${this.maxBytes} bytes`);
      this.parts.push(chunk.subarray(start, nl));
      lines.push(Buffer.concat(this.parts).toString('utf8'));
      this.parts = [];
      this.pending = 0;
      start = nl + 1;
    }
    if (start < chunk.length) {
      this.pending += chunk.length - start;
      if (this.pending > this.maxBytes) throw new MuonscopeError('INVALID_ARGUMENT', `a line of more than ${this.maxBytes} bytes`);
      this.parts.push(chunk.subarray(start));
    }
    return lines;
  }
}

/** One authenticated Python process on the channel. */
export interface Peer {
  readonly hello: Hello;
  send(message: HostMessage): void;
  /** Answers with an error and ends the connection. */
  refuse(code: ChannelErrorCode, message: string): void;
  readonly open: boolean;
}

export interface ChannelOptions {
  token: string;
  /** The hello passed; the returned message (the welcome) is sent before anything else. */
  onHello: (peer: Peer) => HostMessage;
  onMessage: (peer: Peer, message: PythonMessage) => void;
  onClose: (peer: Peer) => void;
  log: (line: string) => void;
  /** How long a new connection may take to say hello (default 10 s). */
  helloTimeoutMs?: number;
  /** Only the process with this pid may connect (a host started by the training itself, attached.ts). */
  pid?: number;
}

export interface Channel {
  /** `127.0.0.1:PORT`, the value of MUONSCOPE_CHANNEL. */
  address: string;
  port: number;
  /** The connected process, if any. */
  peer(): Peer | undefined;
  close(): Promise<void>;
}

const send = (socket: Socket, message: HostMessage) => {
  if (!socket.destroyed && socket.writable) socket.write(JSON.stringify(message) + '\n');
};

export async function startChannel(options: ChannelOptions): Promise<Channel> {
  const sockets = new Set<Socket>();
  let current: (Peer & { socket: Socket }) | undefined;

  const server = createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    const splitter = new LineSplitter(MAX_CHANNEL_LINE_BYTES);
    let peer: (Peer & { socket: Socket }) | undefined;
    let refused = false;
    const refuse = (code: ChannelErrorCode, message: string) => {
      if (refused) return;
      refused = true;
      send(socket, { type: 'error', code, message });
      socket.end();
      // A peer that does not read its error must not hold the connection open.
      setTimeout(() => socket.destroy(), 1000).unref();
    };
    const helloTimer = setTimeout(() => refuse('BAD_HELLO', 'no hello within the time allowed'), options.helloTimeoutMs ?? 10_000);
    helloTimer.unref();

    const onLine = (line: string) => {
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch {
        if (!peer) return refuse('BAD_HELLO', 'the first line must be a JSON hello');
        return send(socket, { type: 'error', code: 'BAD_JSON', message: `not valid JSON: ${line.slice(0, 200)}` });
      }
      if (!peer) return hello(json);
      const checked = validatePythonMessage(json);
      if (!checked.ok) {
        const first = checked.issues[0];
        return send(socket, { type: 'error', code: 'BAD_MESSAGE', message: checked.issues.map((i) => `${i.path}: ${i.message}`).join('; ').slice(0, 2000), path: first.path });
      }
      options.onMessage(peer, checked.value);
    };

    const hello = (json: unknown) => {
      clearTimeout(helloTimer);
      const checked = validateHello(json);
      if (!checked.ok) return refuse('BAD_HELLO', `the first line must be a hello: ${checked.issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`.slice(0, 2000));
      if (!tokenMatches(checked.value.token, options.token)) return refuse('BAD_TOKEN', 'wrong token (MUONSCOPE_CHANNEL_TOKEN)');
      if (checked.value.protocol !== CHANNEL_PROTOCOL) return refuse('UNSUPPORTED_PROTOCOL', `channel protocol ${checked.value.protocol} is not supported; this host speaks ${CHANNEL_PROTOCOL}`);
      if (options.pid !== undefined && checked.value.pid !== options.pid) return refuse('BAD_HELLO', `this host was started for the process with pid ${options.pid}, not ${checked.value.pid}`);
      if (current?.open) return refuse('BUSY', `another process (pid ${current.hello.pid}) is connected to this run`);
      const me = {
        hello: checked.value,
        socket,
        send: (m: HostMessage) => send(socket, m),
        refuse,
        get open() {
          return !refused && !socket.destroyed && socket.writable;
        },
      };
      peer = current = me;
      send(socket, options.onHello(me));
    };

    socket.on('data', (chunk: Buffer) => {
      let lines: string[];
      try {
        lines = splitter.push(chunk);
      } catch (e) {
        socket.pause();
        return refuse('LINE_TOO_LONG', `${(e as Error).message}; the limit is ${MAX_CHANNEL_LINE_BYTES} bytes a line`);
      }
      for (const line of lines) {
        if (refused || socket.destroyed) break;
        if (line.trim() === '') continue;
        try {
          onLine(line);
        } catch (e) {
          options.log(`channel: message handler failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        }
      }
    });
    socket.on('error', (e) => options.log(`channel: ${e.message}`));
    socket.on('close', () => {
      clearTimeout(helloTimer);
      sockets.delete(socket);
      if (peer) {
        if (current === peer) current = undefined;
        options.onClose(peer);
      }
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (e) => options.log(`channel server: ${e.message}`));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  return {
    address: `127.0.0.1:${port}`,
    port,
    peer: () => (current?.open ? current : undefined),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

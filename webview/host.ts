/**
 * The dashboard's only link to the outside: `ToDashboard` messages in, `FromDashboard` messages out, and a
 * place to keep UI state. In VS Code that is `acquireVsCodeApi()` (the extension host is the one socket
 * client). In a plain browser, on the page the trainer serves, the same messages are made from the
 * trainer's WebSocket protocol here, so nothing else in the dashboard knows which one it runs in.
 */
import type { FromDashboard, ToDashboard } from '../common/dashboard-messages.js';
import type { LogRecord, ServerMessage } from '../common/protocol.js';

export interface Host {
  readonly kind: 'vscode' | 'browser';
  post(msg: FromDashboard): void;
  onMessage(fn: (msg: ToDashboard) => void): void;
  getState<T>(): T | undefined;
  setState(state: unknown): void;
}

interface VsCodeApi {
  postMessage(msg: unknown): void;
  getState(): unknown;
  setState(state: unknown): void;
}
declare global {
  // Injected by VS Code into webviews (and by the browser tests' fake host); callable once per page.
  function acquireVsCodeApi(): VsCodeApi;
}

function vscodeHost(api: VsCodeApi): Host {
  return {
    kind: 'vscode',
    post: (msg) => api.postMessage(msg),
    onMessage: (fn) => window.addEventListener('message', (e: MessageEvent) => fn(e.data as ToDashboard)),
    getState: <T>() => (api.getState() ?? undefined) as T | undefined,
    setState: (s) => api.setState(s),
  };
}

const STATE_KEY = 'muonscope.dashboard';
const RECONNECT_MS = 1000;

/** The token the trainer put in the page's address (`#token=…` or `?token=…`). */
function pageToken(): string {
  const fromHash = new URLSearchParams(location.hash.replace(/^#/, '')).get('token');
  return fromHash ?? new URLSearchParams(location.search).get('token') ?? '';
}

/**
 * Speaks the trainer's protocol over a WebSocket back to the server that served the page: subscribes from
 * the last seq it saw (0 at first, so the history replays), reconnects after a drop without gaps, and
 * relays acks and errors as replies.
 */
function browserHost(): Host {
  const listeners: ((msg: ToDashboard) => void)[] = [];
  const emit = (msg: ToDashboard): void => listeners.forEach((fn) => fn(msg));
  let socket: WebSocket | null = null;
  let runId = '';
  let lastSeq = 0;

  const connect = (): void => {
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/?token=${encodeURIComponent(pageToken())}`);
    socket = ws;
    if (runId) emit({ type: 'connection', runId, state: 'connecting' });
    ws.onopen = () => ws.send(JSON.stringify({ type: 'subscribe', afterSeq: lastSeq }));
    ws.onmessage = (e: MessageEvent) => {
      const msg = JSON.parse(String(e.data)) as ServerMessage;
      switch (msg.type) {
        case 'hello':
          if (msg.runId !== runId) {
            runId = msg.runId;
            lastSeq = 0;
            emit({ type: 'runs', runs: [{ runId, label: msg.runDir.split(/[\\/]/).pop() || runId, runDir: msg.runDir, live: true }] });
          }
          emit({ type: 'connection', runId, state: 'live' });
          return;
        case 'events': {
          const records: LogRecord[] = msg.records;
          if (records.length) lastSeq = Math.max(lastSeq, records[records.length - 1].seq);
          emit({ type: 'records', runId, records });
          return;
        }
        case 'replayed':
          return;
        case 'ack':
        case 'error':
          emit({ type: 'reply', runId, reply: msg });
          return;
      }
    };
    ws.onclose = (e: CloseEvent) => {
      if (socket !== ws) return;
      socket = null;
      if (runId) emit({ type: 'connection', runId, state: 'offline', detail: e.reason || `connection closed (${e.code}); retrying` });
      setTimeout(connect, RECONNECT_MS);
    };
  };

  return {
    kind: 'browser',
    post(msg) {
      if (msg.type === 'ready') {
        if (!socket) connect();
      } else if (msg.type === 'command') {
        if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: 'command', id: msg.id, command: msg.command, source: 'dashboard' }));
        else emit({ type: 'reply', runId: msg.runId, reply: { type: 'error', id: msg.id, code: 'OFFLINE', message: 'not connected to the trainer' } });
      }
      // pickRun: a browser page shows only the run of the trainer that served it.
    },
    onMessage: (fn) => void listeners.push(fn),
    getState: <T>() => {
      const raw = sessionStorage.getItem(STATE_KEY);
      return raw ? (JSON.parse(raw) as T) : undefined;
    },
    setState: (s) => sessionStorage.setItem(STATE_KEY, JSON.stringify(s)),
  };
}

export function connectHost(): Host {
  return typeof acquireVsCodeApi === 'function' ? vscodeHost(acquireVsCodeApi()) : browserHost();
}

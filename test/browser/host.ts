/**
 * A stand-in for the extension host in the browser tests: a tiny HTTP server serves the built dashboard
 * with the real HTML shell (common/dashboard-page.ts, strict CSP), and a fake `acquireVsCodeApi` injected before
 * the page's scripts relays messages both ways. On `ready` it sends the runs and their whole history (as
 * the extension does after a reload); commands get scripted replies, and accepted ones are appended to the
 * run's log as the trainer would (control and state records), then streamed to the page.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import type { FromDashboard, ToDashboard } from '../../common/dashboard-messages.js';
import type { Command, LogRecord, NewLogRecord, RecordOf } from '../../common/protocol.js';
import { dashboardHtml } from '../../common/dashboard-page.js';
import { waitUntil } from '../helpers/wait.js';

const root = join(import.meta.dirname, '..', '..');
const dist = join(root, 'dist', 'webview');

export interface RunFixture {
  runId: string;
  label: string;
  records: LogRecord[];
  live: boolean;
}

export function loadStream(file: string): LogRecord[] {
  return readFileSync(join(root, 'test/fixtures/dashboard', file), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as LogRecord);
}

/** Serves dist/webview and the HTML shell on 127.0.0.1; resolves with its origin. */
export async function serveDashboard(): Promise<{ origin: string; server: Server }> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const origin = `http://${req.headers.host}`;
    const files: Record<string, [string, string]> = { '/main.js': ['main.js', 'text/javascript'], '/main.css': ['main.css', 'text/css'] };
    if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(dashboardHtml({ scriptUri: `${origin}/main.js`, styleUri: `${origin}/main.css`, cspSource: origin }));
    } else if (files[url.pathname]) {
      const [name, type] = files[url.pathname];
      res.writeHead(200, { 'content-type': type });
      res.end(readFileSync(join(dist, name)));
    } else {
      res.writeHead(404).end(); // favicon.ico: the page asks, nothing is served
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

/** What the fake extension host does with the page: relay, record, reply. */
export class FakeHost {
  readonly posted: FromDashboard[] = [];
  readonly errors: string[] = [];
  /** Override to script a refusal; the default accepts every command. */
  script: ((command: Command) => { error: string } | null) | null = null;

  private constructor(
    readonly page: Page,
    readonly runs: RunFixture[],
    readonly batch: number,
  ) {}

  static async open(browser: Browser, origin: string, runs: RunFixture[], o: { batch?: number; viewport?: { width: number; height: number } } = {}): Promise<FakeHost> {
    const page = await browser.newPage({ viewport: o.viewport ?? { width: 1280, height: 900 } });
    const host = new FakeHost(page, runs, o.batch ?? 200);
    page.on('pageerror', (e) => host.errors.push(String(e)));
    page.on('console', (m) => {
      // Chromium's own favicon request is not the dashboard's error.
      if (m.type() === 'error' && !/404/.test(m.text())) host.errors.push(m.text());
    });
    await page.exposeFunction('__hostPost', (msg: FromDashboard) => host.receive(msg));
    // A string, not a function: tsx would wrap a function's inner arrows in helpers the page lacks.
    await page.addInitScript(`window.acquireVsCodeApi = () => ({
      postMessage: (m) => window.__hostPost(m),
      getState: () => JSON.parse(sessionStorage.getItem('vscode-state') ?? 'null'),
      setState: (s) => sessionStorage.setItem('vscode-state', JSON.stringify(s)),
    });`);
    await page.goto(origin);
    await host.waitFor("the page's ready message", () => host.posted.some((m) => m.type === 'ready'));
    return host;
  }

  /**
   * Sends one message to the page as the extension would (a window message event, structured-cloned). It
   * crosses into the page as a JSON string: Playwright's own argument encoding is far slower on big arrays.
   */
  async send(msg: ToDashboard): Promise<void> {
    await this.page.evaluate((json) => window.postMessage(JSON.parse(json), '*'), JSON.stringify(msg));
  }

  /** Waits until `pred` holds; on timeout, names what was awaited and the last messages the page posted. */
  async waitFor(what: string, pred: () => boolean): Promise<void> {
    await waitUntil(what, () => ({ done: pred(), lastPosted: this.posted.slice(-3).map((m) => m.type) }), { until: (s) => s.done });
  }

  commands(): Extract<FromDashboard, { type: 'command' }>[] {
    return this.posted.filter((m): m is Extract<FromDashboard, { type: 'command' }> => m.type === 'command');
  }

  /** Appends records to a run's log (stamping seq and t) and streams them to the page. */
  async append(runId: string, records: NewLogRecord[]): Promise<LogRecord[]> {
    const run = this.runs.find((r) => r.runId === runId)!;
    const stamped = records.map((r, i) => ({ ...r, seq: run.records.length + i + 1, t: Date.now() }) as LogRecord);
    run.records.push(...stamped);
    await this.send({ type: 'records', runId, records: stamped });
    return stamped;
  }

  private async receive(msg: FromDashboard): Promise<void> {
    this.posted.push(msg);
    if (msg.type === 'ready') await this.replay();
    else if (msg.type === 'command') await this.answer(msg);
  }

  private async replay(): Promise<void> {
    await this.send({ type: 'runs', runs: this.runs.map((r) => ({ runId: r.runId, label: r.label, runDir: `/runs/${r.label}`, live: r.live })) });
    for (const run of this.runs) {
      await this.send({ type: 'connection', runId: run.runId, state: run.live ? 'live' : 'ended' });
      for (let i = 0; i < run.records.length; i += this.batch) await this.send({ type: 'records', runId: run.runId, records: run.records.slice(i, i + this.batch) });
    }
  }

  /** As the trainer would: refuse (scripted), or ack and log the change. */
  private async answer(msg: Extract<FromDashboard, { type: 'command' }>): Promise<void> {
    const run = this.runs.find((r) => r.runId === msg.runId)!;
    const step = lastStep(run.records) + 1;
    const refusal = this.script?.(msg.command);
    if (refusal) {
      await this.send({ type: 'reply', runId: run.runId, reply: { type: 'error', id: msg.id, code: 'NOT_ALLOWED_NOW', message: refusal.error } });
      return;
    }
    const c = msg.command;
    const control = (command: string, field: string, old: unknown, value: unknown): NewLogRecord => ({ kind: 'control', step, command, field, old, new: value, source: 'dashboard', reason: c.reason ?? '', commandId: msg.id });
    const records: NewLogRecord[] = [];
    let detail: string | undefined;
    switch (c.kind) {
      case 'pause':
        records.push(control('pause', 'state', 'running', 'paused'), { kind: 'state', step, state: 'paused', reason: 'paused by dashboard' });
        break;
      case 'resume':
        records.push(control('resume', 'state', 'paused', 'running'), { kind: 'state', step, state: 'running', reason: 'resumed by dashboard' });
        break;
      case 'step':
        records.push(control('step', 'state', 'paused', `running ${c.n} step(s)`));
        detail = `running ${c.n} step(s), then pausing`;
        break;
      case 'stop':
        records.push(control('stop', 'state', 'running', 'stopped'));
        break;
      case 'set_lr':
        records.push(control('set_lr', 'lr', lastLr(run.records), c.lr));
        break;
      case 'set_schedule': {
        const from = c.fromStep ?? step;
        const previous = [...run.records].reverse().find((r) => r.kind === 'control' && r.command === 'set_schedule');
        const old = previous?.kind === 'control' ? (previous.new as { schedule: unknown }).schedule : (run.records[0] as { config: { optimizer: { schedule: unknown } } }).config.optimizer.schedule;
        records.push(control('set_schedule', 'schedule', old, { fromStep: from, schedule: c.schedule }));
        break;
      }
      case 'checkpoint':
        records.push({ kind: 'checkpoint', step, file: `/runs/ckpt-${step}.ckpt`, reason: 'requested by dashboard' });
        detail = `/runs/ckpt-${step}.ckpt`;
        break;
      case 'set_diagnostics':
        records.push(control('set_diagnostics', 'diagnostics', null, { every: c.every }));
        break;
      case 'apply_suggestion':
      case 'dismiss_suggestion': {
        const suggestion = run.records.find((r): r is RecordOf<'suggestion'> => r.kind === 'suggestion' && r.id === c.id);
        const done = run.records.find((r): r is RecordOf<'suggestion_outcome'> => r.kind === 'suggestion_outcome' && r.id === c.id);
        if (!suggestion || done) {
          const message = done ? `suggestion "${c.id}" was already ${done.outcome} at step ${done.step}` : `no suggestion "${c.id}" in this run`;
          await this.send({ type: 'reply', runId: run.runId, reply: { type: 'error', id: msg.id, code: done ? 'NOT_ALLOWED_NOW' : 'INVALID_COMMAND', message } });
          return;
        }
        if (c.kind === 'apply_suggestion') {
          const change = suggestion.change;
          if (change.kind === 'set_lr') records.push(control('set_lr', 'lr', lastLr(run.records), change.lr));
          else records.push(control('set_schedule', 'schedule', null, { fromStep: step, schedule: change.schedule }));
        }
        records.push({ kind: 'suggestion_outcome', step, id: c.id, outcome: c.kind === 'apply_suggestion' ? 'applied' : 'dismissed', source: 'dashboard', reason: c.reason ?? '' });
        detail = `${c.kind === 'apply_suggestion' ? 'applied' : 'dismissed'} ${c.id}`;
        break;
      }
    }
    await this.send({ type: 'reply', runId: run.runId, reply: { type: 'ack', id: msg.id, kind: c.kind, step, ...(detail ? { detail } : {}) } });
    await this.append(run.runId, records);
  }
}

function lastStep(records: readonly LogRecord[]): number {
  for (let i = records.length - 1; i >= 0; i--) {
    const r = records[i];
    if (r.kind === 'step') return r.step;
  }
  return -1;
}

function lastLr(records: readonly LogRecord[]): number | null {
  for (let i = records.length - 1; i >= 0; i--) {
    const r = records[i];
    if (r.kind === 'step') return r.lr;
  }
  return null;
}

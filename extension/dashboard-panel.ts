/**
 * Dashboard panels. Each panel shows one or more runs (the first is focused; several for Compare Runs)
 * and gets everything through its PanelRelay: on the page's `ready` (first load, reload, restore after
 * a window reload, or becoming visible again, since hidden webviews are torn down) it gets the runs and
 * their full history, then live records in batches. Commands from the page are validated by the protocol
 * module and forwarded to the run's trainer; the answer goes back as a `reply`.
 *
 * Which runs a panel showed is kept in workspaceState, in panel order, so the serializer can restore
 * panels after a window reload without depending on what the page keeps in its own state.
 */
import * as vscode from 'vscode';
import { validateFromDashboard, type FromDashboard, type ToDashboard } from '../common/dashboard-messages.js';
import { dashboardHtml, makeNonce } from '../common/dashboard-page.js';
import { PanelRelay } from './relay.js';
import type { RunRegistry } from './run-registry.js';
import type { RunSession } from './run-session.js';

export const DASHBOARD_VIEW_TYPE = 'muonscope.dashboard';
const STATE_KEY = 'muonscope.openPanels';

class DashboardPanel implements vscode.Disposable {
  private readonly relay: PanelRelay;
  private ready = false;
  private readonly subs: vscode.Disposable[] = [];
  private runSubs: vscode.Disposable[] = [];
  private readonly disposed = new vscode.EventEmitter<void>();
  readonly onDidDispose = this.disposed.event;

  constructor(
    readonly panel: vscode.WebviewPanel,
    public runIds: string[],
    private readonly registry: RunRegistry,
    extensionUri: vscode.Uri,
    private readonly onRunsChanged: () => void,
  ) {
    this.relay = new PanelRelay((m) => void panel.webview.postMessage(m));
    const webviewRoot = vscode.Uri.joinPath(extensionUri, 'dist', 'webview');
    panel.webview.options = { enableScripts: true, localResourceRoots: [webviewRoot] };
    panel.webview.html = this.html(webviewRoot);
    this.subs.push(
      panel.webview.onDidReceiveMessage((m) => this.onMessage(m)),
      panel.onDidChangeViewState(() => {
        // A hidden webview is torn down; it says `ready` again when shown, and then gets everything.
        if (!panel.visible) {
          this.ready = false;
          this.relay.clear();
        }
        if (panel.active) registry.focus(this.sessions()[0]);
      }),
      panel.onDidDispose(() => this.dispose()),
    );
    this.watchRuns();
  }

  sessions(): RunSession[] {
    return this.runIds.map((id) => this.registry.get(id)).filter((s): s is RunSession => !!s);
  }

  showsFirst(id: string): boolean {
    return this.runIds[0] === id;
  }

  addRun(session: RunSession): void {
    if (!this.runIds.includes(session.id)) this.runIds.push(session.id);
    this.watchRuns();
    this.onRunsChanged();
    if (this.ready) this.replay();
  }

  private html(webviewRoot: vscode.Uri): string {
    const w = this.panel.webview;
    return dashboardHtml({
      scriptUri: w.asWebviewUri(vscode.Uri.joinPath(webviewRoot, 'main.js')).toString(),
      styleUri: w.asWebviewUri(vscode.Uri.joinPath(webviewRoot, 'main.css')).toString(),
      cspSource: w.cspSource,
      nonce: makeNonce(),
      title: this.panel.title,
    });
  }

  private watchRuns(): void {
    for (const d of this.runSubs) d.dispose();
    this.runSubs = [];
    const sessions = this.sessions();
    this.panel.title = sessions.length > 1 ? `Muonscope: compare ${sessions.length} runs` : `Muonscope: ${sessions[0]?.label ?? 'run'}`;
    for (const s of sessions) {
      this.runSubs.push(
        s.onDidAppend((records) => this.ready && this.relay.send({ type: 'records', runId: s.id, records })),
        s.onDidChangeConnection((state) => this.ready && this.relay.send({ type: 'connection', runId: s.id, state })),
      );
    }
  }

  /** Everything the page needs from scratch: the runs, their connection states, their full histories. */
  private replay(): void {
    this.relay.clear();
    const sessions = this.sessions();
    this.relay.send({ type: 'runs', runs: sessions.map((s) => s.descriptor()) });
    for (const s of sessions) {
      this.relay.send({ type: 'connection', runId: s.id, state: s.live ? s.connection : 'ended' });
      this.relay.send({ type: 'records', runId: s.id, records: [...s.fullRecords()] });
    }
  }

  private onMessage(raw: unknown): void {
    const checked = validateFromDashboard(raw);
    if (!checked.ok) return; // the page is ours; a malformed message is a bug there, not a user action
    const msg: FromDashboard = checked.value;
    switch (msg.type) {
      case 'ready':
        this.ready = true;
        this.replay();
        break;
      case 'command': {
        const session = this.registry.get(msg.runId);
        const reply = (answer: Extract<ToDashboard, { type: 'reply' }>['reply']) => this.relay.send({ type: 'reply', runId: msg.runId, reply: answer });
        if (!session) {
          reply({ type: 'error', id: msg.id, code: 'RUN_ENDED', message: `unknown run ${msg.runId}` });
          break;
        }
        void session.command(msg.command, 'dashboard').then((r) => reply({ ...r, id: msg.id }));
        break;
      }
      case 'pickRun':
        void vscode.commands.executeCommand('muonscope.compareRuns', this);
        break;
    }
  }

  dispose(): void {
    this.relay.dispose();
    for (const d of [...this.subs, ...this.runSubs]) d.dispose();
    this.panel.dispose();
    this.disposed.fire();
    this.disposed.dispose();
  }
}

export type { DashboardPanel };

export class DashboardPanels implements vscode.WebviewPanelSerializer, vscode.Disposable {
  private readonly panels: DashboardPanel[] = [];
  private shuttingDown = false;
  private restoreQueue: string[][];

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly registry: RunRegistry,
  ) {
    this.restoreQueue = context.workspaceState.get<string[][]>(STATE_KEY, []);
  }

  /** Shows the dashboard for these runs: reveals a panel already focused on the first, or opens one. */
  open(sessions: RunSession[]): void {
    if (!sessions.length) return;
    const existing = sessions.length === 1 ? this.panels.find((p) => p.showsFirst(sessions[0].id)) : undefined;
    if (existing) {
      existing.panel.reveal();
      return;
    }
    const panel = vscode.window.createWebviewPanel(DASHBOARD_VIEW_TYPE, `Muonscope: ${sessions[0].label}`, vscode.ViewColumn.Active, {
      enableScripts: true,
      localResourceRoots: [vscode.Uri.joinPath(this.context.extensionUri, 'dist', 'webview')],
    });
    this.adopt(panel, sessions.map((s) => s.id));
  }

  /** Restores a panel after a window reload; its runs come from what was saved, in panel order. */
  async deserializeWebviewPanel(panel: vscode.WebviewPanel): Promise<void> {
    const ids = this.restoreQueue.shift() ?? [];
    for (const id of ids) {
      if (!this.registry.get(id)) this.registry.refresh();
      this.registry.get(id)?.ensureLoaded();
    }
    this.adopt(panel, ids.filter((id) => this.registry.get(id)));
  }

  private adopt(panel: vscode.WebviewPanel, runIds: string[]): void {
    const p = new DashboardPanel(panel, runIds, this.registry, this.context.extensionUri, () => this.save());
    this.panels.push(p);
    p.onDidDispose(() => {
      this.panels.splice(this.panels.indexOf(p), 1);
      this.save();
    });
    this.save();
  }

  private save(): void {
    if (this.shuttingDown) return;
    void this.context.workspaceState.update(STATE_KEY, this.panels.map((p) => p.runIds));
  }

  dispose(): void {
    // The window is closing or reloading: keep the saved list, which restores these panels next time,
    // and leave the panels themselves to the workbench (disposing them here would close them for good).
    this.shuttingDown = true;
  }
}

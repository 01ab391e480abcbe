/**
 * Dashboard panels. Each panel shows one or more runs (the first is focused; several for Compare Runs)
 * and gets everything through its PanelRelay: on the page's `ready` (first load, reload, restore after
 * a window reload, or becoming visible again, since hidden webviews are torn down) it gets the runs and
 * their full history, then live records in batches. Commands from the page are validated by the protocol
 * module and forwarded to the run's trainer; the answer goes back as a `reply`.
 *
 * Which runs a panel showed is in its page's saved state (common/dashboard-messages.ts, SavedPanelRuns),
 * which VS Code hands back to the serializer with the panel itself after a window reload.
 */
import * as vscode from 'vscode';
import { savedPanelRuns, validateFromDashboard, type FromDashboard, type ToDashboard } from '../common/dashboard-messages.js';
import { dashboardHtml, makeNonce } from '../common/dashboard-page.js';
import { PanelRelay } from './relay.js';
import type { RunRegistry } from './run-registry.js';
import type { RunSession } from './run-session.js';

export const DASHBOARD_VIEW_TYPE = 'muonscope.dashboard';

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

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly registry: RunRegistry,
    /** Settles once the trainers this workspace was attached to are re-attached (or known gone). */
    private readonly reattached: Promise<unknown>,
  ) {}

  /** Whether a command argument is one of these panels (its "add run" button). */
  isPanel(arg: unknown): boolean {
    return this.panels.some((p) => p === arg);
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

  /**
   * Restores a panel after a window reload to the runs its page saved in its own state (so the order in
   * which the workbench revives panels does not matter). A run that cannot be found any more is said so.
   */
  async deserializeWebviewPanel(panel: vscode.WebviewPanel, state: unknown): Promise<void> {
    const saved = savedPanelRuns(state) ?? [];
    await this.reattached;
    const find = () => saved.map((r) => this.registry.byRunDir(r.runDir) ?? this.registry.get(r.runId));
    if (find().some((s) => !s)) await this.registry.refresh();
    const found = find().filter((s): s is RunSession => !!s);
    if (!found.length) {
      const what = saved.length ? saved.map((r) => r.runDir).join(', ') : 'its runs';
      panel.dispose();
      void vscode.window.showWarningMessage(`Muonscope: a dashboard could not be restored: ${what} is no longer in this workspace's runs folders, and no trainer serves it.`);
      return;
    }
    await Promise.all(found.map((s) => s.load()));
    this.adopt(panel, found.map((s) => s.id));
  }

  private adopt(panel: vscode.WebviewPanel, runIds: string[]): void {
    const p = new DashboardPanel(panel, runIds, this.registry, this.context.extensionUri);
    this.panels.push(p);
    p.onDidDispose(() => this.panels.splice(this.panels.indexOf(p), 1));
  }

  dispose(): void {
    // The window is closing or reloading: the panels belong to the workbench, which restores them (with
    // the state their pages saved) next time; disposing them here would close them for good.
  }
}

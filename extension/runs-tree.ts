/** The "Muonscope Runs" view: live runs first, then past runs, each with state, step, loss, optimizer and p. */
import * as vscode from 'vscode';
import type { RunState } from '../common/protocol.js';
import type { RunRegistry } from './run-registry.js';
import type { RunSession } from './run-session.js';
import { describeProgress } from './run-summary.js';
import { throttle } from './throttle.js';

const ICONS: Record<RunState | 'unknown', [string, string?]> = {
  running: ['sync~spin', 'charts.green'],
  paused: ['debug-pause', 'charts.yellow'],
  finished: ['pass', 'charts.green'],
  stopped: ['debug-stop'],
  crashed: ['error', 'errorForeground'],
  unknown: ['circle-outline'],
};

function rowKey(item: vscode.TreeItem): string {
  return [item.label, item.description, item.contextValue, (item.tooltip as vscode.MarkdownString).value].join('\n');
}

export class RunsTreeProvider implements vscode.TreeDataProvider<RunSession>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<RunSession[] | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly refresh = throttle(() => this.fireChange(), 300);
  private readonly sub: vscode.Disposable;
  /** The rows VS Code last asked for, in order: what the tree shows. */
  private shown: RunSession[] = [];
  /** What each row showed when VS Code last asked for it (its text, state and menus; the icon follows the state). */
  private readonly drawn = new WeakMap<RunSession, string>();

  constructor(private readonly registry: RunRegistry) {
    this.sub = registry.onDidChange(() => this.refresh());
  }

  /**
   * Only rows whose text changed are refreshed, one by one; the whole tree only when rows come, go or move.
   * A whole-tree refresh makes VS Code forget every row until it has asked for them again, and a click on
   * a row's button in that moment reaches the command without its run (which then acts on the focused run:
   * Stop on one row stopped another); refreshing a row renews its click command, so a click on a row that
   * did not change must not race a refresh of it. With a live run this is several times a second.
   */
  private fireChange(): void {
    const sessions = this.registry.all();
    const sameRows = sessions.length > 0 && sessions.length === this.shown.length && sessions.every((s, i) => s === this.shown[i]);
    if (!sameRows) {
      this.changed.fire(undefined);
      return;
    }
    const stale = sessions.filter((s) => this.drawn.get(s) !== rowKey(this.render(s)));
    if (stale.length) this.changed.fire(stale);
  }

  getChildren(element?: RunSession): RunSession[] {
    if (element) return [];
    this.shown = this.registry.all();
    return this.shown;
  }

  getTreeItem(s: RunSession): vscode.TreeItem {
    const item = this.render(s);
    this.drawn.set(s, rowKey(item));
    return item;
  }

  private render(s: RunSession): vscode.TreeItem {
    const state = s.state ?? 'unknown';
    const item = new vscode.TreeItem(s.descriptor().label, vscode.TreeItemCollapsibleState.None);
    item.id = s.id;
    const opt = s.summary.optimizer ? ` · ${s.summary.optimizer}` : '';
    item.description = `${state} · ${describeProgress(s.summary)}${opt}`;
    const [icon, color] = ICONS[state];
    item.iconPath = new vscode.ThemeIcon(icon, color ? new vscode.ThemeColor(color) : undefined);
    // e.g. "muonscopeRun.running.live": menus match on state and liveness.
    item.contextValue = `muonscopeRun.${state}.${s.live ? 'live' : 'past'}`;
    const md = new vscode.MarkdownString(undefined, true);
    md.appendMarkdown(`**${s.descriptor().label}** — ${state}${s.crashedDetail ? ` (${s.crashedDetail})` : ''}\n\n`);
    md.appendText(`${describeProgress(s.summary)}\n`);
    if (s.summary.valLoss !== undefined) md.appendText(`val loss ${s.summary.valLoss.toPrecision(4)}\n`);
    if (s.summary.optimizer) md.appendText(`optimizer ${s.summary.optimizer}\n`);
    if (s.summary.backend) md.appendText(`backend ${s.summary.backend}, kernels ${s.summary.kernels ?? '–'}\n`);
    if (s.summary.lastError) md.appendText(`last error: ${s.summary.lastError.split('\n')[0]}\n`);
    md.appendText(s.runDir);
    item.tooltip = md;
    item.command = { command: 'muonscope.openDashboard', title: 'Open Dashboard', arguments: [s] };
    return item;
  }

  dispose(): void {
    this.refresh.cancel();
    this.sub.dispose();
    this.changed.dispose();
  }
}

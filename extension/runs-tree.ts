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

export class RunsTreeProvider implements vscode.TreeDataProvider<RunSession>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly refresh = throttle(() => this.changed.fire(), 300);
  private readonly sub: vscode.Disposable;

  constructor(private readonly registry: RunRegistry) {
    this.sub = registry.onDidChange(() => this.refresh());
  }

  getChildren(element?: RunSession): RunSession[] {
    return element ? [] : this.registry.all();
  }

  getTreeItem(s: RunSession): vscode.TreeItem {
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

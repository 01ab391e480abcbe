/** The status bar item for the focused run: state, step, loss, p, backend; a click opens its dashboard. */
import * as vscode from 'vscode';
import type { RunRegistry } from './run-registry.js';
import { describeProgress } from './run-summary.js';
import { throttle } from './throttle.js';

const STATE_ICONS: Record<string, string> = { running: '$(sync~spin)', paused: '$(debug-pause)', finished: '$(pass)', stopped: '$(debug-stop)', crashed: '$(error)' };

export class RunStatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('muonscope.run', vscode.StatusBarAlignment.Left, 50);
  private readonly update = throttle(() => this.render(), 250);
  private readonly sub: vscode.Disposable;

  constructor(private readonly registry: RunRegistry) {
    this.item.name = 'Muonscope run';
    this.item.command = 'muonscope.openDashboard';
    this.sub = registry.onDidChange(() => this.update());
    this.render();
  }

  private render(): void {
    const s = this.registry.focused;
    // Context keys drive the `when` clauses of Pause/Resume/Stop in the palette and editor title.
    void vscode.commands.executeCommand('setContext', 'muonscope.focusedState', s?.state ?? '');
    void vscode.commands.executeCommand('setContext', 'muonscope.focusedLive', !!s?.live);
    void vscode.commands.executeCommand('setContext', 'muonscope.hasLiveRun', this.registry.live().length > 0);
    if (!s) {
      this.item.hide();
      return;
    }
    const state = s.state ?? 'starting';
    const backend = s.summary.backend ? ` · ${s.summary.backend}` : '';
    const offline = s.live && s.connection !== 'live' ? ` (${s.connection})` : '';
    const pending = s.summary.pendingSuggestions.length;
    const advice = pending ? ` · $(lightbulb) ${pending}` : '';
    this.item.text = `${STATE_ICONS[state] ?? '$(pulse)'} Muonscope: ${state}${offline} · ${describeProgress(s.summary)}${backend}${advice}`;
    const adviceLine = pending ? `\n${pending} pending suggestion${pending === 1 ? '' : 's'} from the advisor (Suggestions tab)` : '';
    this.item.tooltip = `${s.descriptor().label}\n${s.runDir}${adviceLine}\nClick to open the dashboard`;
    this.item.backgroundColor = state === 'crashed' ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
    this.item.show();
  }

  dispose(): void {
    this.update.cancel();
    this.sub.dispose();
    this.item.dispose();
  }
}

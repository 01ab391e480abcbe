/** CodeLens above a `*.muonscope.json` config: "Start run", and for the live run started from it Pause/Resume and Open dashboard. */
import * as vscode from 'vscode';
import type { RunRegistry } from './run-registry.js';
import { readSettings } from './settings.js';
import { throttle } from './throttle.js';

export class RunConfigCodeLensProvider implements vscode.CodeLensProvider, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeCodeLenses = this.changed.event;
  private readonly fire = throttle(() => this.changed.fire(), 500);
  private readonly subs: vscode.Disposable[];
  private lastStates = '';

  constructor(private readonly registry: RunRegistry) {
    this.subs = [
      // Lenses depend only on which runs are live and their state, not on every step.
      registry.onDidChange(() => {
        const states = registry.live().map((s) => `${s.id}:${s.state}:${s.configPath}`).join('|');
        if (states === this.lastStates) return;
        this.lastStates = states;
        this.fire();
      }),
      vscode.workspace.onDidChangeConfiguration((e) => e.affectsConfiguration('muonscope.codeLens.enabled') && this.fire()),
    ];
  }

  provideCodeLenses(document: vscode.TextDocument): vscode.CodeLens[] {
    if (!readSettings(document.uri).codeLensEnabled) return [];
    const top = new vscode.Range(0, 0, 0, 0);
    const lenses = [new vscode.CodeLens(top, { title: '$(play) Start run', command: 'muonscope.startRun', arguments: [document.uri] })];
    const live = this.registry.byConfig(document.uri.fsPath);
    if (live) {
      if (live.state === 'running') lenses.push(new vscode.CodeLens(top, { title: '$(debug-pause) Pause', command: 'muonscope.pause', arguments: [live] }));
      if (live.state === 'paused') lenses.push(new vscode.CodeLens(top, { title: '$(debug-continue) Resume', command: 'muonscope.resume', arguments: [live] }));
      lenses.push(new vscode.CodeLens(top, { title: '$(graph) Open dashboard', command: 'muonscope.openDashboard', arguments: [live] }));
    }
    return lenses;
  }

  dispose(): void {
    this.fire.cancel();
    for (const s of this.subs) s.dispose();
    this.changed.dispose();
  }
}

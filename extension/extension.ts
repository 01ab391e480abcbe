/**
 * Muonscope's extension host: wires the run registry (sessions, one WebSocket client per live run), the
 * trainer process manager, and the views (runs tree, status bar, CodeLens, dashboard panels).
 */
import * as vscode from 'vscode';
import { RunConfigCodeLensProvider } from './codelens.js';
import { AttachedTrainers } from './attached-trainers.js';
import { reattachSaved } from './commands/attach.js';
import { registerCommands } from './commands/index.js';
import { DASHBOARD_VIEW_TYPE, DashboardPanels } from './dashboard-panel.js';
import { MuonscopeOutput } from './output.js';
import { RunScanner } from './run-discovery.js';
import { RunLauncher } from './run-launcher.js';
import { RunRegistry } from './run-registry.js';
import { RunsTreeProvider } from './runs-tree.js';
import { allRunRoots, readSettings } from './settings.js';
import { RunStatusBar } from './status-bar.js';
import { TokenStore } from './token-store.js';

let launcher: RunLauncher | undefined;

export function activate(context: vscode.ExtensionContext): void {
  // A trainer found serving a run folder (one that outlived the last window) is re-attached at once.
  const output = new MuonscopeOutput();
  const registry = new RunRegistry(new RunScanner(), allRunRoots, () => readSettings().maxHistoryPoints, (s, info) => launcher?.reattach(s, info), output);
  launcher = new RunLauncher(context, registry);
  const attached = new AttachedTrainers(context.workspaceState);
  const tokens = new TokenStore(context.secrets);
  // Panels restored after a reload wait for the re-attached trainers, so their runs are there to show.
  let reattached: (done: unknown) => void = () => undefined;
  const panels = new DashboardPanels(context, registry, new Promise((resolve) => (reattached = resolve)));
  const deps = { registry, launcher, panels, tokens, output, attached };
  const tree = new RunsTreeProvider(registry);
  const rescan = setInterval(() => void registry.refresh(), 10_000);

  context.subscriptions.push(
    output,
    registry,
    launcher,
    panels,
    tree,
    new RunStatusBar(registry),
    vscode.window.createTreeView('muonscope.runs', { treeDataProvider: tree, showCollapseAll: false }),
    vscode.window.registerWebviewPanelSerializer(DASHBOARD_VIEW_TYPE, panels),
    vscode.languages.registerCodeLensProvider({ pattern: '**/*.muonscope.json' }, new RunConfigCodeLensProvider(registry)),
    ...registerCommands(deps),
    watchRunFolders(registry),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('muonscope.runFolder')) void registry.refresh();
      if (e.affectsConfiguration('muonscope.maxHistoryPoints')) registry.setHistoryLimit(readSettings().maxHistoryPoints);
    }),
    vscode.workspace.onDidChangeWorkspaceFolders(() => void registry.refresh()),
    { dispose: () => clearInterval(rescan) },
  );
  void registry.refresh();
  void reattachSaved(deps).finally(() => reattached(undefined));
}

/** New run folders and trainers appearing in them (e.g. started from a terminal) show up at once. */
function watchRunFolders(registry: RunRegistry): vscode.Disposable {
  const watcher = vscode.workspace.createFileSystemWatcher('**/{log.ndjson,trainer.json}', false, true, false);
  watcher.onDidCreate(() => void registry.refresh());
  watcher.onDidDelete(() => void registry.refresh());
  return watcher;
}

/** Interrupts the trainers this window started (they checkpoint and exit) unless "keep running" is on. */
export async function deactivate(): Promise<void> {
  await launcher?.shutdown();
}

/**
 * The command palette's Muonscope commands. Each has one id, reached from the palette, the runs tree,
 * the CodeLens, the editor title and the status bar; a command without a run argument acts on the
 * focused run, or asks.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import * as vscode from 'vscode';
import type { Command } from '../common/protocol.js';
import { starterConfig, type StarterKind } from './config-starter.js';
import type { DashboardPanel, DashboardPanels } from './dashboard-panel.js';
import { recordsToCsv, recordsToJson } from './export.js';
import { RunLauncher, TrainerStartError } from './run-launcher.js';
import type { RunRegistry } from './run-registry.js';
import { RunSession } from './run-session.js';
import { readSettings, runRootFor } from './settings.js';
import type { TokenStore } from './token-store.js';

interface Deps {
  registry: RunRegistry;
  launcher: RunLauncher;
  panels: DashboardPanels;
  tokens: TokenStore;
}

type RunFilter = (s: RunSession) => boolean;

export function registerCommands(d: Deps): vscode.Disposable[] {
  const { registry } = d;

  /** The run a command acts on: its argument (tree item, CodeLens, id, config file), the focused run, or a pick. */
  async function target(arg: unknown, filter: RunFilter, what: string): Promise<RunSession | undefined> {
    if (arg instanceof RunSession) return arg;
    if (typeof arg === 'string' && registry.get(arg)) return registry.get(arg);
    if (arg instanceof vscode.Uri) {
      const s = registry.byConfig(arg.fsPath);
      if (s) return s;
    }
    const focused = registry.focused;
    if (focused && filter(focused)) return focused;
    const candidates = registry.all().filter(filter);
    if (candidates.length === 1) return candidates[0];
    if (candidates.length === 0) {
      void vscode.window.showInformationMessage(`Muonscope: no run to ${what}.`);
      return undefined;
    }
    const pick = await vscode.window.showQuickPick(
      candidates.map((s) => ({ label: s.descriptor().label, description: s.state ?? '', detail: s.runDir, session: s })),
      { placeHolder: `Run to ${what}` },
    );
    return pick?.session;
  }

  async function send(arg: unknown, command: Command, filter: RunFilter, what: string): Promise<void> {
    const s = await target(arg, filter, what);
    if (!s) return;
    registry.focus(s);
    const reply = await s.command(command, 'vscode');
    if (reply.type === 'error') {
      void vscode.window.showErrorMessage(`Muonscope: could not ${what} ${s.label}: ${reply.message}`, 'Show Log').then((c) => c && s.log().show());
    } else {
      vscode.window.setStatusBarMessage(`Muonscope: ${what} accepted at step ${reply.step}`, 3000);
    }
  }

  const isLive: RunFilter = (s) => s.live;
  const isRunning: RunFilter = (s) => s.live && s.state === 'running';
  const isPaused: RunFilter = (s) => s.live && s.state === 'paused';
  const any: RunFilter = () => true;

  async function pickConfig(arg: unknown): Promise<vscode.Uri | undefined> {
    if (arg instanceof vscode.Uri) return arg;
    const active = vscode.window.activeTextEditor?.document.uri;
    if (active?.fsPath.endsWith('.muonscope.json')) return active;
    const files = await vscode.workspace.findFiles('**/*.muonscope.json', '**/node_modules/**', 200);
    if (files.length === 1) return files[0];
    if (files.length === 0) {
      const choice = await vscode.window.showInformationMessage('Muonscope: no *.muonscope.json run config in this workspace.', 'New Run Config');
      if (choice) await vscode.commands.executeCommand('muonscope.newRunConfig');
      return undefined;
    }
    const pick = await vscode.window.showQuickPick(
      files.map((f) => ({ label: basename(f.fsPath), description: vscode.workspace.asRelativePath(dirname(f.fsPath)), uri: f })),
      { placeHolder: 'Run config to start' },
    );
    return pick?.uri;
  }

  async function launch(title: string, req: Parameters<RunLauncher['start']>[0]): Promise<RunSession | undefined> {
    try {
      return await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title }, () => d.launcher.start(req));
    } catch (e) {
      const lines = e instanceof TrainerStartError ? e.lines.filter((l) => l.trim()).slice(-8) : [];
      const output = vscode.window.createOutputChannel('Muonscope: failed start', { log: true });
      for (const l of lines) output.error(l);
      const detail = lines.length ? ` ${lines.join(' | ')}` : '';
      const choice = await vscode.window.showErrorMessage(`Muonscope: the run did not start: ${(e as Error).message}.${detail}`, 'Show Log');
      if (choice) output.show();
      return undefined;
    }
  }

  function folderFor(uri: vscode.Uri | undefined): vscode.WorkspaceFolder | undefined {
    return (uri && vscode.workspace.getWorkspaceFolder(uri)) ?? vscode.workspace.workspaceFolders?.[0];
  }

  const commands: Record<string, (...args: unknown[]) => unknown> = {
    'muonscope.newRunConfig': async () => {
      const folder = folderFor(vscode.window.activeTextEditor?.document.uri);
      if (!folder) {
        void vscode.window.showErrorMessage('Muonscope: open a folder first; the run config is written into it.');
        return;
      }
      const choice = await vscode.window.showQuickPick(
        [
          { label: 'MLP on teacher–student regression', description: 'seconds on a CPU', starter: 'mlp' as StarterKind },
          { label: 'Tiny transformer on a Markov text source', description: 'a minute or two on a CPU', starter: 'transformer' as StarterKind },
        ],
        { placeHolder: 'What should the starter config train?' },
      );
      if (!choice) return;
      let file = join(folder.uri.fsPath, `${choice.starter}.muonscope.json`);
      for (let i = 2; existsSync(file); i++) file = join(folder.uri.fsPath, `${choice.starter}-${i}.muonscope.json`);
      writeFileSync(file, starterConfig(choice.starter, choice.starter, readSettings(folder.uri).diagnosticsEvery));
      await vscode.window.showTextDocument(vscode.Uri.file(file));
    },

    'muonscope.startRun': async (arg) => {
      const config = await pickConfig(arg);
      if (!config) return;
      const doc = vscode.workspace.textDocuments.find((t) => t.uri.toString() === config.toString());
      if (doc?.isDirty) await doc.save();
      const folder = folderFor(config);
      const runRoot = runRootFor(folder) ?? join(dirname(config.fsPath), readSettings().runFolder);
      const session = await launch(`Muonscope: starting ${basename(config.fsPath)}…`, { configPath: config.fsPath, runRoot, cwd: folder?.uri.fsPath ?? dirname(config.fsPath) });
      if (session) vscode.window.setStatusBarMessage(`Muonscope: ${session.label} started`, 4000);
    },

    'muonscope.continueRun': async (arg) => {
      const s = await target(arg, (r) => !r.live && (r.state === 'crashed' || r.state === 'stopped'), 'continue from its last checkpoint');
      if (!s) return;
      const folder = folderFor(vscode.Uri.file(s.runDir));
      await launch(`Muonscope: continuing ${s.label}…`, { resumeRunDir: s.runDir, runRoot: dirname(s.runDir), cwd: folder?.uri.fsPath ?? s.runDir });
    },

    'muonscope.attach': async () => {
      const url = await vscode.window.showInputBox({
        title: 'Attach to Trainer (1/2)',
        prompt: 'The trainer\'s WebSocket URL, as its first output line shows it (use an SSH tunnel for a remote machine)',
        placeHolder: 'ws://127.0.0.1:8765',
        ignoreFocusOut: true,
        validateInput: (v) => (/^wss?:\/\/[^\s/]+/.test(v.trim()) ? undefined : 'a ws:// or wss:// URL'),
      });
      if (!url) return;
      const clean = url.trim().replace(/\/+$/, '');
      let token = await d.tokens.get(clean);
      if (token) {
        const reuse = await vscode.window.showQuickPick(['Use the saved token', 'Enter a new token'], { title: 'Attach to Trainer (2/2)' });
        if (!reuse) return;
        if (reuse !== 'Use the saved token') token = undefined;
      }
      if (!token) {
        token = (await vscode.window.showInputBox({ title: 'Attach to Trainer (2/2)', prompt: 'The trainer\'s token', password: true, ignoreFocusOut: true }))?.trim();
        if (!token) return;
        await d.tokens.set(clean, token);
      }
      const session = registry.ensure(`attached:${clean}`, `attached-${clean.replace(/^wss?:\/\//, '').replace(/[^A-Za-z0-9.-]+/g, '-')}`);
      session.attach(clean, token);
      registry.focus(session);
      const sub = session.onDidChangeConnection((state) => {
        if (state !== 'live') return;
        sub.dispose();
        vscode.window.setStatusBarMessage(`Muonscope: attached to ${clean}`, 4000);
      });
    },

    'muonscope.pause': (arg) => send(arg, { kind: 'pause', reason: 'paused from VS Code' }, isRunning, 'pause'),
    'muonscope.resume': (arg) => send(arg, { kind: 'resume', reason: 'resumed from VS Code' }, isPaused, 'resume'),
    'muonscope.stop': (arg) => send(arg, { kind: 'stop', reason: 'stopped from VS Code' }, isLive, 'stop'),
    'muonscope.checkpoint': (arg) => send(arg, { kind: 'checkpoint', reason: 'Checkpoint Now from VS Code' }, isLive, 'checkpoint'),

    'muonscope.openDashboard': async (arg) => {
      const s = await target(arg, any, 'open');
      if (!s) return;
      registry.focus(s);
      s.ensureLoaded();
      d.panels.open([s]);
    },

    'muonscope.compareRuns': async (arg) => {
      const panel = arg as DashboardPanel | undefined;
      const shown = new Set(panel?.runIds ?? []);
      const items = registry
        .all()
        .filter((s) => !shown.has(s.id))
        .map((s) => ({ label: s.descriptor().label, description: `${s.state ?? ''} · ${s.summary.optimizer ?? ''}`, detail: s.runDir, session: s }));
      if (!items.length) {
        void vscode.window.showInformationMessage('Muonscope: no other runs to compare.');
        return;
      }
      const picks = await vscode.window.showQuickPick(items, { canPickMany: true, placeHolder: panel ? 'Runs to add to this dashboard' : 'Runs to compare (two or more)' });
      if (!picks?.length) return;
      for (const p of picks) p.session.ensureLoaded();
      if (panel?.runIds) for (const p of picks) panel.addRun(p.session);
      else d.panels.open(picks.map((p) => p.session));
    },

    'muonscope.exportRun': async (arg) => {
      const s = await target(arg, any, 'export');
      if (!s) return;
      const format = await vscode.window.showQuickPick(
        [
          { label: 'CSV', description: 'one row per step: loss, val loss, lr, p, step time', ext: 'csv' },
          { label: 'JSON', description: 'every record of the run log', ext: 'json' },
        ],
        { placeHolder: `Export ${s.label} as` },
      );
      if (!format) return;
      const target_ = await vscode.window.showSaveDialog({
        defaultUri: vscode.Uri.file(join(existsSync(s.runDir) ? s.runDir : (vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? s.runDir), `${s.label}.${format.ext}`)),
        filters: { [format.label]: [format.ext] },
      });
      if (!target_) return;
      const records = s.fullRecords();
      const text = format.ext === 'csv' ? recordsToCsv(records) : recordsToJson(records);
      await vscode.workspace.fs.writeFile(target_, Buffer.from(text, 'utf8'));
      void vscode.window.showInformationMessage(`Muonscope: exported ${records.length} records to ${basename(target_.fsPath)}.`);
    },

    'muonscope.openRunFolder': async (arg) => {
      const s = await target(arg, (r) => existsSync(r.runDir), 'open the folder of');
      if (!s) return;
      const uri = vscode.Uri.file(s.runDir);
      if (vscode.workspace.getWorkspaceFolder(uri)) await vscode.commands.executeCommand('revealInExplorer', uri);
      else await vscode.commands.executeCommand('vscode.openFolder', uri, { forceNewWindow: true });
    },

    'muonscope.showLog': async (arg) => {
      const s = await target(arg, any, 'show the log of');
      s?.log().show();
    },

    'muonscope.refreshRuns': () => registry.refresh(),
  };

  return Object.entries(commands).map(([id, fn]) => vscode.commands.registerCommand(id, fn));
}

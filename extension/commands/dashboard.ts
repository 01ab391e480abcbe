/** Open Dashboard and Compare Runs. */
import * as vscode from 'vscode';
import type { DashboardPanel } from '../dashboard-panel.js';
import { RunSession } from '../run-session.js';
import { anyRun, targetRun, type CommandDeps } from './deps.js';

export async function openDashboard(d: CommandDeps, arg: unknown): Promise<void> {
  const s = await targetRun(d, arg, anyRun, 'open');
  if (!s) return;
  d.registry.focus(s);
  await s.load();
  d.panels.open([s]);
}

/**
 * Three ways in: from a dashboard's "add run" (the picks join that panel), from a run in the tree (that run
 * compared with the picks), or from the palette (two or more picks).
 */
export async function compareRuns(d: CommandDeps, arg: unknown): Promise<void> {
  const panel = d.panels.isPanel(arg) ? (arg as DashboardPanel) : undefined;
  const base = arg instanceof RunSession ? arg : undefined;
  const shown = new Set(panel?.runIds ?? (base ? [base.id] : []));
  const items = d.registry
    .all()
    .filter((s) => !shown.has(s.id))
    .map((s) => ({ label: s.descriptor().label, description: `${s.state ?? ''} · ${s.summary.optimizer ?? ''}`, detail: s.runDir, session: s }));
  if (!items.length) {
    void vscode.window.showInformationMessage('Muonscope: no other runs to compare.');
    return;
  }
  const placeHolder = panel ? 'Runs to add to this dashboard' : base ? `Runs to compare with ${base.label}` : 'Runs to compare (two or more)';
  const picks = await vscode.window.showQuickPick(items, { canPickMany: true, placeHolder });
  if (!picks?.length) return;
  const sessions = [...(base ? [base] : []), ...picks.map((p) => p.session)];
  await Promise.all(sessions.map((s) => s.load()));
  if (panel) for (const s of sessions) panel.addRun(s);
  else d.panels.open(sessions);
}

/**
 * Attach to Trainer: connect to a trainer this window did not start (a terminal, another machine through
 * an SSH tunnel). The user hears at once if it fails and why (unauthorised, refused, timed out), with a
 * Retry; a token is saved only once the trainer accepted it; and a run already in the tree (found in the
 * workspace's runs folder) stays one row, whichever way it was found.
 */
import * as vscode from 'vscode';
import type { RunSession } from '../run-session.js';
import type { ConnectFailure } from '../trainer-client.js';
import type { CommandDeps } from './deps.js';

const FIRST_CONNECT_TIMEOUT_MS = 15_000;

export interface AttachArgs {
  url?: string;
}

/** Resolves when the session's first connection is live, or with why its first attempt failed. */
export function firstConnectOutcome(session: RunSession, timeoutMs = FIRST_CONNECT_TIMEOUT_MS): Promise<'live' | ConnectFailure> {
  return new Promise((resolve) => {
    const done = (outcome: 'live' | ConnectFailure) => {
      clearTimeout(timer);
      sub.dispose();
      resolve(outcome);
    };
    const timer = setTimeout(() => done({ kind: 'timed out', message: `no answer from ${session.client?.url ?? 'the trainer'} within ${timeoutMs / 1000} s` }), timeoutMs);
    const sub = session.onDidChangeConnection((state) => {
      if (state === 'live') done('live');
      else if (state === 'offline' && session.client?.lastFailure) done(session.client.lastFailure);
    });
  });
}

async function askUrl(prefill: string | undefined): Promise<string | undefined> {
  const url = await vscode.window.showInputBox({
    title: 'Attach to Trainer (1/2)',
    prompt: "The trainer's WebSocket URL, as its first output line shows it (use an SSH tunnel for a remote machine)",
    placeHolder: 'ws://127.0.0.1:8765',
    value: prefill,
    ignoreFocusOut: true,
    validateInput: (v) => (/^wss?:\/\/[^\s/]+/.test(v.trim()) ? undefined : 'a ws:// or wss:// URL'),
  });
  return url?.trim().replace(/\/+$/, '');
}

async function askToken(d: CommandDeps, url: string): Promise<string | undefined> {
  const saved = await d.tokens.get(url);
  if (saved) {
    const reuse = await vscode.window.showQuickPick(['Use the saved token', 'Enter a new token'], { title: 'Attach to Trainer (2/2)' });
    if (!reuse) return undefined;
    if (reuse === 'Use the saved token') return saved;
  }
  return (await vscode.window.showInputBox({ title: 'Attach to Trainer (2/2)', prompt: "The trainer's token", password: true, ignoreFocusOut: true }))?.trim() || undefined;
}

/**
 * Connects a new session to `url`; on success it merges with the tree's row for the same run folder. A run
 * already listed live is connected again all the same: that is what checks the token.
 */
export async function connectAttached(d: CommandDeps, url: string, token: string): Promise<{ session: RunSession } | { failure: ConnectFailure }> {
  const { registry } = d;
  const session = registry.ensure(`attached:${url}`, `attached-${url.replace(/^wss?:\/\//, '').replace(/[^A-Za-z0-9.-]+/g, '-')}`);
  session.attach(url, token);
  const outcome = await firstConnectOutcome(session);
  if (outcome !== 'live') {
    registry.remove(session);
    return { failure: outcome };
  }
  const twin = registry.all().find((s) => s !== session && s.runDir === session.runDir);
  if (!twin) return { session };
  // The same run was already in the tree (found in a runs folder): keep that row, connected once.
  registry.remove(session);
  if (!twin.live) twin.attach(url, token);
  return { session: twin };
}

export async function attachToTrainer(d: CommandDeps, arg?: unknown): Promise<void> {
  const prefill = (arg as AttachArgs | undefined)?.url;
  const url = await askUrl(prefill);
  if (!url) return;
  const token = await askToken(d, url);
  if (!token) return;
  const result = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Muonscope: attaching to ${url}…` }, () => connectAttached(d, url, token));
  if ('failure' in result) {
    const log = d.output.section(() => `attach ${url}`);
    log.error(result.failure.message);
    const choice = await vscode.window.showErrorMessage(`Muonscope: could not attach (${result.failure.kind}): ${result.failure.message}.`, 'Retry', 'Show Log');
    if (choice === 'Retry') await vscode.commands.executeCommand('muonscope.attach', { url } satisfies AttachArgs);
    if (choice === 'Show Log') log.show();
    return;
  }
  await d.tokens.set(url, token);
  rememberWhileLive(d, result.session, url);
  d.registry.focus(result.session);
  vscode.window.setStatusBarMessage(`Muonscope: attached to ${url}`, 4000);
}

/** Keeps `url` in the workspace's attached list until its run ends, so a window reload re-attaches it. */
function rememberWhileLive(d: CommandDeps, session: RunSession, url: string): void {
  d.attached.remember(url);
  const sub = session.onDidChangeConnection((state) => {
    if (state !== 'ended') return;
    sub.dispose();
    d.attached.forget(url);
  });
}

/**
 * After a window reload: re-attaches the trainers this workspace was attached to, from their saved URL
 * and token. One that is gone is forgotten, and the user is told which and why.
 */
export async function reattachSaved(d: CommandDeps): Promise<void> {
  await Promise.all(
    d.attached.list().map(async (url) => {
      const token = await d.tokens.get(url);
      if (!token) {
        d.attached.forget(url);
        return;
      }
      const result = await connectAttached(d, url, token);
      if ('failure' in result) {
        d.attached.forget(url);
        d.output.section(() => `attach ${url}`).warn(`not re-attached after the reload: ${result.failure.message}`);
        void vscode.window.showWarningMessage(`Muonscope: the trainer at ${url} is gone (${result.failure.kind}: ${result.failure.message}); its run is no longer attached.`);
        return;
      }
      rememberWhileLive(d, result.session, url);
    }),
  );
}

/**
 * Runs code-server (a full VS Code build) with a fresh user-data and extensions folder, per
 * docs/testing.md §4: installs a .vsix, writes the user settings that keep the workspace out of
 * Restricted Mode, starts the server on a free port and stops it by its pid.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { E2eTools } from './install.js';

export interface CodeServer {
  url: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** A port on 127.0.0.1 that is free now (bound by the system, then closed). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export function installExtension(tools: E2eTools, userDataDir: string, extensionsDir: string, vsix: string): void {
  execFileSync(tools.node24, [tools.codeServerEntry, '--user-data-dir', userDataDir, '--extensions-dir', extensionsDir, '--install-extension', vsix], { stdio: 'inherit' });
}

export function writeUserSettings(userDataDir: string, extra: Record<string, unknown> = {}): void {
  mkdirSync(join(userDataDir, 'User'), { recursive: true });
  const settings = {
    'security.workspace.trust.enabled': false,
    'workbench.startupEditor': 'none',
    'chat.disableAIFeatures': true,
    'workbench.tips.enabled': false,
    'extensions.ignoreRecommendations': true,
    ...extra,
  };
  writeFileSync(join(userDataDir, 'User', 'settings.json'), JSON.stringify(settings, null, 2));
}

export async function startCodeServer(tools: E2eTools, userDataDir: string, extensionsDir: string, workspace: string, logFile: (line: string) => void): Promise<CodeServer> {
  const port = await freePort();
  const child = spawn(
    tools.node24,
    [tools.codeServerEntry, '--auth', 'none', '--bind-addr', `127.0.0.1:${port}`, '--user-data-dir', userDataDir, '--extensions-dir', extensionsDir, '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust', workspace],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout!.on('data', (d) => logFile(String(d)));
  child.stderr!.on('data', (d) => logFile(String(d)));
  const url = `http://127.0.0.1:${port}`;
  const started = Date.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error(`code-server exited with ${child.exitCode}`);
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() - started > 60_000) throw new Error('code-server did not answer within 60 s');
    await new Promise((r) => setTimeout(r, 300));
  }
  return {
    url,
    process: child,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await Promise.race([new Promise((r) => child.once('exit', r)), new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

/** Where a new run goes: a fresh folder under the runs root, with the config it runs written into it. */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runPaths, type RunPaths } from '../../common/run-folder/layout.js';
import type { RunConfig } from './config.js';

function timestamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** A new, empty run folder under `root`, named after the run and its start time (never reused). */
export function createRunDir(root: string, config: RunConfig, now = new Date()): RunPaths {
  const safeName = config.name.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '') || 'run';
  let dir = join(root, `${safeName}-${timestamp(now)}`);
  for (let i = 2; existsSync(dir); i++) dir = join(root, `${safeName}-${timestamp(now)}-${i}`);
  const paths = runPaths(dir);
  mkdirSync(paths.checkpoints, { recursive: true });
  writeFileSync(paths.config, JSON.stringify(config, null, 2) + '\n');
  return paths;
}

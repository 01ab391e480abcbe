/**
 * What every scenario gets: the browser page with the workbench, the workspace it opened, a folder outside
 * it (where trainers started by hand write), and the runs earlier scenarios left behind for later ones
 * (the suite is one code-server session; scenarios run in order).
 */
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import type { HandTrainer, HandTrainers } from '../hand-trainer.js';

export const CONFIGS = {
  /** Diagnostics cadence set: long enough to pause, resume and stop by hand. */
  e2e: 'e2e.muonscope.json',
  /** No `diagnostics.every`: the muonscope.diagnosticsEvery setting is what applies. */
  plain: 'plain.muonscope.json',
  /** Two problems: a step count below 1 and a batch size that is not a number. */
  bad: 'bad.muonscope.json',
} as const;

export interface E2e {
  page: Page;
  workspace: string;
  /** Outside the workspace: the run folders of trainers started by hand live here. */
  outside: string;
  trainers: HandTrainers;
  log(msg: string): void;
  screenshot(name: string): Promise<void>;
  /** Run folders later scenarios reuse, by role. */
  runs: { stopped?: string; crashed?: string; plain?: string; attached?: HandTrainer };
}

export interface Scenario {
  name: string;
  /** What the user does and what must hold (the issue item it keeps fixed). */
  covers: string;
  run(e: E2e): Promise<void>;
}

/** A config for trainers started by hand: small and fast, long enough to outlast a scenario unless stopped. */
export function handConfig(name: string, steps = 200_000): string {
  return JSON.stringify({ name, steps, batchSize: 32, model: { type: 'mlp', hiddenDims: [32, 32] }, task: { type: 'teacherStudent', inputDim: 16, outputDim: 4, teacherWidth: 32 }, diagnostics: { every: 50 } }, null, 2);
}

/** Starts a trainer by hand from a terminal: a config outside the workspace, its runs under `out`. */
export async function startByHand(e: E2e, name: string, o: { steps?: number; out?: string } = {}): Promise<HandTrainer> {
  const config = join(e.outside, `${name}.muonscope.json`);
  writeFileSync(config, handConfig(name, o.steps));
  const t = await e.trainers.start(config, o.out ?? join(e.outside, 'runs'));
  e.log(`started by hand: ${t.folder} at ${t.url} (pid ${t.pid})`);
  return t;
}

/** The workspace's run folders, oldest first. */
export function runFolders(workspace: string): string[] {
  const runs = join(workspace, 'runs');
  return existsSync(runs) ? readdirSync(runs).map((n) => join(runs, n)).sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs) : [];
}

export function needs<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`needs ${what}, which an earlier scenario did not leave`);
  return value;
}

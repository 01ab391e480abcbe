/**
 * Finds run folders (config.json + log.ndjson, laid out as common/run-folder/layout.ts describes) under the
 * workspace's run folders, and reads what the tree needs from each. Logs are re-read only when their
 * size or mtime changed, so a refresh of many finished runs costs a few stat calls.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { LogRecord } from '../common/protocol.js';
import { RUN_FILES, runPaths, type TrainerInfo } from '../common/run-folder/layout.js';
import { readRunLog } from '../common/run-folder/log.js';
import { emptySummary, foldSummary, type RunSummary } from './run-summary.js';

export interface DiscoveredRun {
  runDir: string;
  summary: RunSummary;
  /** The live trainer serving the folder (trainer.json present and its process alive). */
  trainer?: TrainerInfo;
  mtimeMs: number;
}

export function isRunDir(dir: string): boolean {
  const p = runPaths(dir);
  return existsSync(p.config) && existsSync(p.log);
}

/** Run folders directly under `root` (how the trainer lays them out) and `root` itself if it is one. */
export function findRunDirs(root: string): string[] {
  if (!existsSync(root)) return [];
  if (isRunDir(root)) return [root];
  let entries: string[];
  try {
    entries = readdirSync(root, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(root, e.name));
  } catch {
    return [];
  }
  return entries.filter(isRunDir).sort();
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** trainer.json, when it names a process that is still alive; a stale file (after a crash) is ignored. */
export function liveTrainerInfo(runDir: string, alive: (pid: number) => boolean = processAlive): TrainerInfo | undefined {
  const file = join(runDir, RUN_FILES.trainer);
  if (!existsSync(file)) return undefined;
  try {
    const info = JSON.parse(readFileSync(file, 'utf8')) as TrainerInfo;
    if (typeof info.pid !== 'number' || typeof info.url !== 'string' || typeof info.token !== 'string') return undefined;
    return alive(info.pid) ? info : undefined;
  } catch {
    return undefined;
  }
}

export function readRunRecords(runDir: string): LogRecord[] {
  return readRunLog(runPaths(runDir).log).records;
}

export class RunScanner {
  private readonly cache = new Map<string, { size: number; mtimeMs: number; summary: RunSummary }>();

  constructor(private readonly alive: (pid: number) => boolean = processAlive) {}

  scan(roots: readonly string[]): DiscoveredRun[] {
    const seen = new Set<string>();
    const runs: DiscoveredRun[] = [];
    for (const root of roots) {
      for (const runDir of findRunDirs(root)) {
        if (seen.has(runDir)) continue;
        seen.add(runDir);
        const run = this.read(runDir);
        if (run) runs.push(run);
      }
    }
    for (const key of [...this.cache.keys()]) if (!seen.has(key)) this.cache.delete(key);
    return runs.sort((a, b) => b.mtimeMs - a.mtimeMs);
  }

  private read(runDir: string): DiscoveredRun | undefined {
    let st;
    try {
      st = statSync(runPaths(runDir).log);
    } catch {
      return undefined;
    }
    let cached = this.cache.get(runDir);
    if (!cached || cached.size !== st.size || cached.mtimeMs !== st.mtimeMs) {
      let summary = emptySummary();
      try {
        summary = foldSummary(summary, readRunRecords(runDir));
      } catch {
        // An unreadable log still lists the folder; the summary just stays empty.
      }
      cached = { size: st.size, mtimeMs: st.mtimeMs, summary };
      this.cache.set(runDir, cached);
    }
    return { runDir, summary: cached.summary, trainer: liveTrainerInfo(runDir, this.alive), mtimeMs: st.mtimeMs };
  }
}

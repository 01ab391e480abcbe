/**
 * Finds run folders (config.json + log.ndjson, the layout of common/run-folder) under the workspace's run
 * folders and keeps a summary of each, for the runs tree. Everything here is asynchronous and
 * incremental: a log is followed by byte offset (LogTail), so a refresh of many runs costs a few stat
 * calls plus the bytes appended since the last one, and a run the extension is already streaming over
 * its socket is not read at all (its session folds the same records as they arrive).
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LogTail } from '../common/run-folder/log-tail.js';
import { runPaths, type TrainerInfo } from '../common/run-folder/layout.js';
import { emptySummary, foldSummary, type RunSummary } from './run-summary.js';

export interface DiscoveredRun {
  runDir: string;
  /** The log's summary; undefined for a run skipped because it is being streamed. */
  summary?: RunSummary;
  /** The live trainer serving the folder (trainer.json present and its process alive). */
  trainer?: TrainerInfo;
  mtimeMs: number;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

export async function isRunDir(dir: string): Promise<boolean> {
  const p = runPaths(dir);
  return (await exists(p.config)) && (await exists(p.log));
}

/** Run folders directly under `root` (how the trainer lays them out) and `root` itself if it is one. */
export async function findRunDirs(root: string): Promise<string[]> {
  if (await isRunDir(root)) return [root];
  let dirs: string[];
  try {
    dirs = (await readdir(root, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => join(root, e.name));
  } catch {
    return [];
  }
  const flags = await Promise.all(dirs.map(isRunDir));
  return dirs.filter((_, i) => flags[i]).sort();
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
export async function liveTrainerInfo(runDir: string, alive: (pid: number) => boolean = processAlive): Promise<TrainerInfo | undefined> {
  let text: string;
  try {
    text = await readFile(runPaths(runDir).trainer, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const info = JSON.parse(text) as TrainerInfo;
    if (typeof info.pid !== 'number' || typeof info.url !== 'string' || typeof info.token !== 'string') return undefined;
    return alive(info.pid) ? info : undefined;
  } catch {
    return undefined;
  }
}

interface Followed {
  tail: LogTail;
  summary: RunSummary;
}

export class RunScanner {
  private readonly followed = new Map<string, Followed>();

  constructor(private readonly alive: (pid: number) => boolean = processAlive) {}

  /**
   * Every run folder under `roots`, newest first. `streamed(runDir)` says the extension already receives
   * that run's records over a socket: such a log is not read (its summary comes back undefined).
   */
  async scan(roots: readonly string[], streamed: (runDir: string) => boolean = () => false): Promise<DiscoveredRun[]> {
    const dirs = [...new Set((await Promise.all(roots.map(findRunDirs))).flat())];
    const runs = (await Promise.all(dirs.map((d) => this.read(d, streamed(d))))).filter((r): r is DiscoveredRun => !!r);
    const seen = new Set(dirs);
    for (const key of [...this.followed.keys()]) if (!seen.has(key)) this.followed.delete(key);
    return runs.sort((a, b) => b.mtimeMs - a.mtimeMs);
  }

  private async read(runDir: string, streamed: boolean): Promise<DiscoveredRun | undefined> {
    let mtimeMs: number;
    try {
      mtimeMs = (await stat(runPaths(runDir).log)).mtimeMs;
    } catch {
      return undefined;
    }
    const trainer = await liveTrainerInfo(runDir, this.alive);
    if (streamed) {
      // The session has these records already; drop our copy so a later read starts clean.
      this.followed.delete(runDir);
      return { runDir, trainer, mtimeMs };
    }
    let f = this.followed.get(runDir);
    if (!f) {
      f = { tail: new LogTail(runPaths(runDir).log), summary: emptySummary() };
      this.followed.set(runDir, f);
    }
    try {
      const { records, restarted } = await f.tail.read();
      if (restarted) f.summary = emptySummary();
      if (records.length) f.summary = foldSummary(f.summary, records);
    } catch {
      // An unreadable log still lists the folder; the summary keeps what was read before.
    }
    return { runDir, summary: f.summary, trainer, mtimeMs };
  }
}

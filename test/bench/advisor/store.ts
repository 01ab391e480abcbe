/**
 * The harness's resumable results file: one JSON line per finished job, keyed by its full spec — task,
 * optimizer, lr, seed, steps, evaluation cadence, a hash of the run config the job builds, and the code
 * revision (commit, plus a hash of the uncommitted changes when the tree is dirty). A run killed midway
 * continues with --resume and reruns nothing it has; a file written by another revision is refused, so
 * results from two versions of the trainer are never mixed silently.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { JobResult, JobSpec } from './job.js';

export interface Revision {
  commit: string;
  dirty: boolean;
  /** sha256 of `git diff HEAD` (tracked files), first 12 hex digits; null when clean. */
  diffHash: string | null;
}

export function revisionLabel(r: Revision): string {
  return r.dirty ? `${r.commit}+dirty.${r.diffHash}` : r.commit;
}

/** The checkout's revision, read with git from `cwd`. */
export function currentRevision(cwd: string): Revision {
  const git = (...args: string[]) => execFileSync('git', args, { cwd, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const commit = git('rev-parse', 'HEAD').trim();
  const diff = git('diff', 'HEAD', '--no-ext-diff', '--binary');
  const dirty = diff.length > 0;
  return { commit, dirty, diffHash: dirty ? createHash('sha256').update(diff).digest('hex').slice(0, 12) : null };
}

/** sha256 of a value's canonical JSON (object keys sorted at every level), first 12 hex digits. */
export function configHash(config: unknown): string {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canonical) : v !== null && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])])) : v;
  return createHash('sha256').update(JSON.stringify(canonical(config))).digest('hex').slice(0, 12);
}

/** The key one job is stored under. lr is written with full precision: 0.005 and 0.0050000001 differ. */
export function jobKey(spec: JobSpec, config: unknown, revision: string): string {
  return [spec.task, spec.optimizer, `lr=${spec.lr}`, `seed=${spec.seed}`, `steps=${spec.steps}`, `every=${spec.evalEvery}`, `config=${configHash(config)}`, `rev=${revision}`].join('|');
}

export interface StoredJob {
  key: string;
  revision: string;
  result: JobResult;
}

/**
 * Parses a results file. A last line cut short (the harness killed while writing it) is dropped with a
 * note; any other malformed line is an error naming the line.
 */
export function parseStore(text: string, file: string): { jobs: StoredJob[]; droppedTail: boolean } {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const jobs: StoredJob[] = [];
  let droppedTail = false;
  lines.forEach((line, i) => {
    try {
      const j = JSON.parse(line) as StoredJob;
      if (typeof j.key !== 'string' || typeof j.revision !== 'string' || typeof j.result !== 'object' || j.result === null) throw new Error('missing key, revision or result');
      jobs.push(j);
    } catch (e) {
      if (i === lines.length - 1) droppedTail = true;
      else throw new Error(`${file}:${i + 1}: not a stored job (${(e as Error).message})`);
    }
  });
  return { jobs, droppedTail };
}

/** The revisions a file's jobs come from, other than `revision`: non-empty means resuming would mix them. */
export function foreignRevisions(jobs: StoredJob[], revision: string): string[] {
  return [...new Set(jobs.map((j) => j.revision).filter((r) => r !== revision))];
}

export class ResultStore {
  private readonly byKey = new Map<string, JobResult>();

  private constructor(
    readonly file: string,
    readonly revision: string,
  ) {}

  /**
   * Opens the results file. `resume`: keep its jobs (refusing a file from another revision); otherwise
   * the file must not hold jobs yet, or `fresh` must say to start it over.
   */
  static open(file: string, revision: string, mode: { resume: boolean; fresh: boolean }): ResultStore {
    const store = new ResultStore(file, revision);
    mkdirSync(dirname(file), { recursive: true });
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    if (mode.fresh || text.trim() === '') {
      writeFileSync(file, '');
      return store;
    }
    if (!mode.resume) throw new Error(`${file} already holds finished jobs: pass --resume to continue that run, or --fresh to start over (its jobs are discarded)`);
    const { jobs, droppedTail } = parseStore(text, file);
    const foreign = foreignRevisions(jobs, revision);
    if (foreign.length) {
      throw new Error(
        `--resume: ${file} holds jobs from revision ${foreign.join(', ')}, this checkout is ${revision}. Results of two code versions are never mixed: check that revision out to continue it, or pass --fresh to start over`,
      );
    }
    for (const j of jobs) store.byKey.set(j.key, j.result);
    if (droppedTail) {
      // Rewrite without the cut line, so the next append starts on a line of its own.
      writeFileSync(file, jobs.map((j) => JSON.stringify(j)).join('\n') + (jobs.length ? '\n' : ''));
      console.log(`${file}: dropped a last line cut short (the previous run was killed while writing it)`);
    }
    return store;
  }

  get size(): number {
    return this.byKey.size;
  }

  get(key: string): JobResult | undefined {
    return this.byKey.get(key);
  }

  /** Records a finished job, on disk before in memory, so a kill right after loses nothing reported as done. */
  put(key: string, result: JobResult): void {
    appendFileSync(this.file, JSON.stringify({ key, revision: this.revision, result } satisfies StoredJob) + '\n');
    this.byKey.set(key, result);
  }
}

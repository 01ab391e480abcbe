/**
 * The harness's resumable results file: one JSON line per finished job, keyed by its full spec — task,
 * optimizer, lr, seed, steps, evaluation cadence, a hash of the run config the job builds, and the code
 * revision. A run killed midway continues with --resume and reruns nothing it has; a file written by
 * another revision is refused, so results from two versions of the trainer are never mixed silently.
 *
 * The revision that keys a job is the content of the code that decides its result (CODE_PATHS: the
 * trainer, the protocol, the harness, the example data, the dependencies), hashed file by file as it is
 * on disk, committed or not; the commit and whether those paths differ from it are recorded beside it.
 * Keying on the commit alone would either mix in uncommitted edits or, in a checkout where others commit
 * docs meanwhile, refuse to resume over a change that cannot affect a single loss value.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { JobResult, JobSpec } from './job.js';

/**
 * What a run's numbers depend on, relative to the repository root (git pathspecs). Left out: what never
 * loads in these in-process Node runs (the PyTorch package, the PyTorch host, the WebSocket server, the
 * CLI) and package.json, whose scripts change often while the dependencies' versions are in the lock file;
 * so a full run that takes hours can be resumed across commits that cannot change a loss value.
 */
export const CODE_PATHS = [
  'trainer',
  'common',
  'test/bench/advisor.bench.ts',
  'test/bench/advisor',
  'examples/data',
  'package-lock.json',
  ':(exclude)trainer/python',
  ':(exclude)trainer/host',
  ':(exclude)trainer/server',
  ':(exclude)trainer/cli.ts',
];

export interface Revision {
  /** `git rev-parse HEAD`. */
  commit: string;
  /** Whether the files under CODE_PATHS differ from the commit (edited, added or deleted). */
  dirty: boolean;
  /** sha256 over CODE_PATHS' files as on disk (path and content of each, sorted), first 12 hex digits: the key. */
  code: string;
}

/** How the report names a revision: the commit, a dirty flag, the code hash jobs are keyed by. */
export function revisionLabel(r: Revision): string {
  return `${r.commit}${r.dirty ? '+dirty' : ''} (code ${r.code})`;
}

/** sha256 of files given as [path, content] pairs, independent of their order; first 12 hex digits. */
export function codeHash(files: [string, Buffer | string][]): string {
  const h = createHash('sha256');
  for (const [path, content] of [...files].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    h.update(`${path}\0${createHash('sha256').update(content).digest('hex')}\n`);
  }
  return h.digest('hex').slice(0, 12);
}

/** The checkout's revision, read with git from the repository root `root`. */
export function currentRevision(root: string): Revision {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: root, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const commit = git('rev-parse', 'HEAD').trim();
  const dirty = git('status', '--porcelain', '--', ...CODE_PATHS).trim().length > 0;
  // Tracked and untracked-but-not-ignored files: a new module the trainer imports counts before it is committed.
  const paths = [...new Set(git('ls-files', '--cached', '--others', '--exclude-standard', '-z', '--', ...CODE_PATHS).split('\0').filter(Boolean))];
  const files = paths.filter((p) => existsSync(join(root, p))).map((p): [string, Buffer] => [p, readFileSync(join(root, p))]);
  return { commit, dirty, code: codeHash(files) };
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
  /** The code hash the job ran at (Revision.code). */
  revision: string;
  /** The commit and dirty flag beside it, for the record. */
  commit?: string;
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
    private readonly commit: string,
  ) {}

  /**
   * Opens the results file. `resume`: keep its jobs (refusing a file from another revision); otherwise
   * the file must not hold jobs yet, or `fresh` must say to start it over.
   */
  static open(file: string, revision: string, mode: { resume: boolean; fresh: boolean }, commit = ''): ResultStore {
    mkdirSync(dirname(file), { recursive: true });
    ResultStore.lock(file);
    try {
      return ResultStore.load(file, revision, mode, commit);
    } catch (e) {
      ResultStore.unlock(file);
      throw e;
    }
  }

  /**
   * One harness per results file: two appending to it would run every job twice. The lock file holds the
   * owner's pid; a lock whose process is gone (a killed run) is taken over.
   */
  private static lock(file: string): void {
    const lockFile = `${file}.lock`;
    if (existsSync(lockFile)) {
      const pid = Number(readFileSync(lockFile, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) throw new Error(`${file} is in use by another harness (pid ${pid}); wait for it or stop it first`);
    }
    writeFileSync(lockFile, `${process.pid}\n`);
  }

  static unlock(file: string): void {
    const lockFile = `${file}.lock`;
    if (existsSync(lockFile) && Number(readFileSync(lockFile, 'utf8').trim()) === process.pid) rmSync(lockFile);
  }

  close(): void {
    ResultStore.unlock(this.file);
  }

  private static load(file: string, revision: string, mode: { resume: boolean; fresh: boolean }, commit: string): ResultStore {
    const store = new ResultStore(file, revision, commit);
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
        `--resume: ${file} holds jobs run at code ${foreign.join(', ')} (${[...new Set(jobs.filter((j) => j.revision !== revision).map((j) => j.commit ?? '?'))].join(', ')}); this checkout's code is ${revision}. Results of two code versions are never mixed: restore that code to continue, or pass --fresh to start over`,
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
    appendFileSync(this.file, JSON.stringify({ key, revision: this.revision, commit: this.commit, result } satisfies StoredJob) + '\n');
    this.byKey.set(key, result);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but is someone else's.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

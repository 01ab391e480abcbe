// `npm run bench:advisor [-- --full | --size smoke|quick|full] [--tasks a,b] [--variants core|all] [--workers N]
//  [--race-steps N] [--resume | --fresh] [--out DIR] [--from-runs FILE]`: the evidence harness (docs/algorithms.md §7).
// Does DynMuon, and does the advisor in `auto`, reach a target loss in fewer steps than tuned Muon and than
// DynMuon's default schedule? Paired seeds; lr tuned per optimizer on separate seeds, on a grid extended past
// an edge that holds the best lr (advisor/tune.ts); target fixed before the evaluation runs; median and
// bootstrap 95% CI of the paired ratios. Every finished job is appended to advisor-jobs.jsonl, keyed by its
// full spec and the code revision, so a killed run continues with --resume (advisor/store.ts).
// --full writes test/bench/results/advisor.json, advisor.md, advisor-runs.json and SVG plots; the smoke and
// quick sizes write to a temporary folder unless --out says otherwise (never over the full run's files).
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { analyse, fixTarget, raceStats, type Tuned } from './advisor/analysis.js';
import { jobConfig, runJob, type JobResult, type JobSpec } from './advisor/job.js';
import { DEFAULT_SCHEDULE, REFERENCE, SIZES, TASKS, selectOptimizers, taskAtSize, type OptimizerSpec, type Size, type SizeName, type TaskSpec } from './advisor/plan.js';
import { forestPlotSvg, lossCurvesSvg, markdownReport, racesOf, type ReportMeta, type Row, type TaskOutcome } from './advisor/report.js';
import { currentRevision, jobKey, ResultStore, revisionLabel } from './advisor/store.js';
import { tailLoss, tuneAdaptive, tuneStep } from './advisor/tune.js';

const RESULTS = join(__dirname, 'results');
const REPO = resolve(__dirname, '..', '..');
/** Steps per branch when the advisor races a suggestion before applying it; 0 turns racing off. */
const DEFAULT_RACE_STEPS = 40;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  if (i < 0) return undefined;
  const v = process.argv[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`${name} needs a value`);
  return v;
}

/** Forked workers (each its own TF.js and onnxruntime), kept for the whole run; results land in the store as they finish. */
class Pool {
  private readonly children: ChildProcess[];
  private readonly wallByTask = new Map<string, { ms: number; steps: number }>();

  constructor(
    workers: number,
    private readonly store: ResultStore,
    private readonly plannedLeft: () => { task: string; steps: number; optimizer: string }[],
  ) {
    this.children = Array.from({ length: workers }, () => fork(__filename, ['--worker'], { cwd: REPO, execArgv: process.execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }));
  }

  close(): void {
    for (const c of this.children) c.kill();
  }

  private learn(r: JobResult): void {
    if (r.failure || r.wallMs <= 0) return;
    const k = `${r.task}/${r.optimizer}`;
    const w = this.wallByTask.get(k) ?? { ms: 0, steps: 0 };
    this.wallByTask.set(k, { ms: w.ms + r.wallMs, steps: w.steps + r.steps });
  }

  /** ms per step of a task's optimizer, from what has finished (that optimizer's, else the task's, else any). */
  private msPerStep(task: string, optimizer: string): number {
    const rate = (keys: string[]) => {
      const ws = keys.map((k) => this.wallByTask.get(k)).filter((w): w is { ms: number; steps: number } => !!w);
      const steps = ws.reduce((a, w) => a + w.steps, 0);
      return steps ? ws.reduce((a, w) => a + w.ms, 0) / steps : NaN;
    };
    const all = [...this.wallByTask.keys()];
    const own = rate([`${task}/${optimizer}`]);
    if (Number.isFinite(own)) return own;
    const sameTask = rate(all.filter((k) => k.startsWith(`${task}/`)));
    return Number.isFinite(sameTask) ? sameTask : rate(all);
  }

  /** Runs the jobs the store lacks; returns every job's result in order. */
  async run(jobs: JobSpec[], label: string): Promise<JobResult[]> {
    const keys = jobs.map((j) => jobKey(j, jobConfig(j), this.store.revision));
    const todo = jobs.map((_, i) => i).filter((i) => !this.store.get(keys[i]));
    for (const i of jobs.keys()) if (this.store.get(keys[i])) this.learn(this.store.get(keys[i])!);
    const reused = jobs.length - todo.length;
    let next = 0;
    let done = 0;
    const startedAt = performance.now();
    const progress = () => {
      const elapsed = (performance.now() - startedAt) / 1000;
      // The whole run's ETA: every planned job not yet finished, at the rate measured for its task and optimizer.
      const left = this.plannedLeft();
      const etaMs = left.reduce((a, j) => a + this.msPerStep(j.task, j.optimizer) * j.steps, 0) / this.children.length;
      const eta = Number.isFinite(etaMs) ? `ETA ${(etaMs / 60000).toFixed(1)} min for ${left.length} planned jobs (grid extensions may add some)` : 'ETA after the first job';
      process.stdout.write(`\r${label}: ${done}/${todo.length} run${reused ? ` (+${reused} resumed)` : ''}, ${elapsed.toFixed(0)} s; ${eta}   `);
    };
    progress();
    const work = (child: ChildProcess) =>
      new Promise<void>((resolveWork, reject) => {
        const send = () => {
          if (next >= todo.length) {
            resolveWork();
            return;
          }
          const index = todo[next++];
          child.once('message', (msg: { index: number; result?: JobResult; error?: string }) => {
            if (msg.error) {
              reject(new Error(`job ${JSON.stringify(jobs[msg.index])} failed: ${msg.error}`));
              return;
            }
            this.store.put(keys[msg.index], msg.result!);
            this.learn(msg.result!);
            done++;
            progress();
            send();
          });
          child.send({ index, job: jobs[index] });
        };
        child.once('error', reject);
        send();
      });
    await Promise.all(this.children.slice(0, Math.max(1, Math.min(this.children.length, todo.length))).map(work));
    process.stdout.write('\n');
    return keys.map((k) => this.store.get(k)!);
  }
}

interface Plan {
  size: Size;
  optimizers: OptimizerSpec[];
  raceSteps: number | null;
}

const specOf = (task: TaskSpec, o: OptimizerSpec, lr: number, seed: number, plan: Plan): JobSpec => ({
  task: task.name,
  optimizer: o.name,
  lr,
  seed,
  steps: task.steps,
  evalEvery: task.evalEvery,
  ...(o.name === 'advisor' && plan.raceSteps ? { raceSteps: plan.raceSteps } : {}),
});

/** Mean tail loss over the tuning seeds at each lr of one optimizer. */
function scoresOf(tuning: JobResult[], optimizer: string, lrs: number[]): Map<number, number> {
  return new Map(
    lrs.map((lr) => {
      const runs = tuning.filter((r) => r.optimizer === optimizer && r.lr === lr);
      if (runs.length === 0) throw new Error(`no tuning run of ${optimizer} at lr ${lr}`);
      return [lr, runs.reduce((a, r) => a + tailLoss(r), 0) / runs.length];
    }),
  );
}

/**
 * Adaptive tuning for every optimizer at once: each stage runs the lrs some optimizer still needs on the
 * tuning seeds, then each optimizer either settles or extends its grid by one step past the edge holding
 * its best lr (tune.ts). At most `maxExtensions` stages after the first.
 */
async function tune(task: TaskSpec, plan: Plan, pool: Pool, tuningSeeds: number[]): Promise<{ tuning: JobResult[]; tuned: Record<string, Tuned>; tried: Record<string, number[]> }> {
  const grids = new Map(plan.optimizers.map((o) => [o.name, [...task.grid[o.family]].sort((a, b) => a - b)]));
  const tuned: Record<string, Tuned> = {};
  const tuning: JobResult[] = [];
  for (let stage = 0; ; stage++) {
    const open = plan.optimizers.filter((o) => !tuned[o.name]);
    if (open.length === 0) break;
    const jobs = open.flatMap((o) => grids.get(o.name)!.filter((lr) => !tuning.some((r) => r.optimizer === o.name && r.lr === lr)).flatMap((lr) => tuningSeeds.map((seed) => specOf(task, o, lr, seed, plan))));
    tuning.push(...(await pool.run(jobs, `${task.name}: tuning${stage ? `, extension ${stage}` : ''}`)));
    for (const o of open) {
      const grid = grids.get(o.name)!;
      const step = tuneStep(grid, scoresOf(tuning, o.name, grid), stage, plan.size.maxExtensions);
      if (step.kind === 'done') tuned[o.name] = { lr: step.lr, atGridEdge: step.atGridEdge, extensions: stage };
      else grids.set(o.name, [...grid, step.lr].sort((a, b) => a - b));
    }
  }
  return { tuning, tuned, tried: Object.fromEntries(grids) };
}

/** Planned jobs of the tasks not yet finished, for the ETA: starting grids and evaluations (extensions unknown ahead). */
function plannedJobs(tasks: TaskSpec[], plan: Plan): JobSpec[] {
  return tasks.flatMap((task) =>
    plan.optimizers.flatMap((o) => [
      ...task.grid[o.family].flatMap((lr) => plan.size.tuningSeeds.map((seed) => specOf(task, o, lr, seed, plan))),
      ...plan.size.evalSeeds.map((seed) => specOf(task, o, NaN, seed, plan)),
    ]),
  );
}

async function evaluateTask(task: TaskSpec, plan: Plan, pool: Pool): Promise<TaskOutcome> {
  // 1. Tune lr per optimizer on the tuning seeds, the same starting grid for every optimizer of a family.
  const { tuning, tuned, tried } = await tune(task, plan, pool, plan.size.tuningSeeds);
  // 2. Fix the target before any evaluation run.
  const { target, targetRule, floor } = fixTarget(task, tuning, tuned[REFERENCE].lr);
  // 3. Evaluation runs on fresh seeds.
  const evalJobs = plan.optimizers.flatMap((o) => plan.size.evalSeeds.map((seed) => specOf(task, o, tuned[o.name].lr, seed, plan)));
  const runs = await pool.run(evalJobs, `${task.name}: evaluation`);
  const rows = analyse(task, target, runs, plan.size.evalSeeds, plan.optimizers, tuned, { muon: REFERENCE, dynmuonDefault: DEFAULT_SCHEDULE });
  return { task, target, targetRule, floor, rows, runs, tuning, tuned, tuningSeeds: plan.size.tuningSeeds, grid: task.grid, tried };
}

interface SavedTask {
  task: string;
  /** The task as run (steps, evaluation cadence, starting grid); absent in files from before adaptive tuning. */
  spec?: TaskSpec;
  maxExtensions?: number;
  tuning: JobResult[];
  evaluation: JobResult[];
}

/**
 * Redoes the analysis and the report from a saved advisor-runs.json, without training: the tuning is
 * replayed on the saved runs (the same decisions, every lr it needs is in the file). A file from before
 * adaptive tuning has no starting grid: every lr it tried is the grid and no extension is replayed.
 */
async function outcomesFromRuns(file: string): Promise<{ outcomes: TaskOutcome[]; meta: ReportMeta }> {
  const saved = JSON.parse(readFileSync(file, 'utf8')) as { meta: Partial<ReportMeta> & { date: string }; tasks: SavedTask[] };
  const outcomes: TaskOutcome[] = [];
  let maxExtensions = 0;
  for (const t of saved.tasks) {
    const known = TASKS.find((x) => x.name === t.task);
    if (!known && !t.spec) throw new Error(`${file}: unknown task ${t.task}`);
    const present = (family: 'muon' | 'adamw') => [...new Set(t.tuning.filter((r) => optimizerOf(r.optimizer)?.family === family).map((r) => r.lr))].sort((a, b) => a - b);
    // An old file ran its own budget: the steps are its runs', the rule is today's.
    const ranSteps = Math.max(...[...t.tuning, ...t.evaluation].flatMap((r) => r.evals.map(([s]) => s)));
    const task: TaskSpec = t.spec ?? { ...known!, steps: ranSteps, grid: { muon: present('muon'), adamw: present('adamw') } };
    const ext = t.maxExtensions ?? 0;
    maxExtensions = Math.max(maxExtensions, ext);
    const names = [...new Set([...t.tuning, ...t.evaluation].map((r) => r.optimizer))];
    const optimizers = selectOptimizers('all').filter((o) => names.includes(o.name));
    const tuned: Record<string, Tuned> = {};
    const tried: Record<string, number[]> = {};
    for (const o of optimizers) {
      const r = await tuneAdaptive(task.grid[o.family], ext, (lrs) => [...scoresOf(t.tuning, o.name, lrs).values()]);
      tuned[o.name] = { lr: r.lr, atGridEdge: r.atGridEdge, extensions: r.extensions };
      tried[o.name] = r.grid;
    }
    const { target, targetRule, floor } = fixTarget(task, t.tuning, tuned[REFERENCE].lr);
    const evalSeeds = [...new Set(t.evaluation.map((r) => r.seed))].sort((a, b) => a - b);
    const tuningSeeds = [...new Set(t.tuning.map((r) => r.seed))].sort((a, b) => a - b);
    const rows = analyse(task, target, t.evaluation, evalSeeds, optimizers, tuned, { muon: REFERENCE, dynmuonDefault: DEFAULT_SCHEDULE });
    outcomes.push({ task, target, targetRule, floor, rows, runs: t.evaluation, tuning: t.tuning, tuned, tuningSeeds, grid: task.grid, tried });
  }
  const m = saved.meta;
  const meta: ReportMeta = {
    date: m.date,
    size: m.size ?? 'full',
    variants: m.variants ?? 'all',
    revision: m.revision ?? 'unknown (a file from before revisions were recorded)',
    cpu: m.cpu ?? 'unknown',
    cores: m.cores ?? 0,
    minutes: m.minutes ?? 0,
    evalSeeds: m.evalSeeds ?? [],
    tuningSeeds: m.tuningSeeds ?? [],
    maxExtensions,
    raceSteps: m.raceSteps ?? null,
  };
  return { outcomes, meta };
}

const optimizerOf = (name: string) => selectOptimizers('all').find((o) => o.name === name);

function writeOutputs(outDir: string, outcomes: TaskOutcome[], meta: ReportMeta, saveRuns: boolean): Row[] {
  mkdirSync(outDir, { recursive: true });
  const rows = outcomes.flatMap((o) => o.rows);
  writeFileSync(
    join(outDir, 'advisor.json'),
    JSON.stringify(
      {
        meta,
        rows: rows.map(({ label: _l, ...r }) => r),
        targets: outcomes.map((o) => ({ task: o.task.name, target: o.target, rule: o.targetRule, tuned: o.tuned, tried: o.tried })),
        // Every race of a suggestion (rule, confidence, winner), per task: the calibration data.
        races: outcomes.map((o) => ({ task: o.task.name, races: racesOf(o), tally: raceStats(racesOf(o)) })),
      },
      null,
      1,
    ) + '\n',
  );
  for (const o of outcomes) {
    writeFileSync(join(outDir, `advisor-${o.task.name}-loss.svg`), lossCurvesSvg(o));
    writeFileSync(join(outDir, `advisor-${o.task.name}-ratios.svg`), forestPlotSvg(o));
  }
  writeFileSync(join(outDir, 'advisor.md'), markdownReport(outcomes, meta));
  if (saveRuns) {
    // Every run's validation curve at full precision, so the analysis can be redone without training
    // (--from-runs) and reproduces the rows exactly.
    const compact = (r: JobResult) => ({ ...r, wallMs: Math.round(r.wallMs) });
    const tasks = outcomes.map((o) => ({ task: o.task.name, spec: o.task, maxExtensions: meta.maxExtensions, target: o.target, tuned: o.tuned, tuning: o.tuning.map(compact), evaluation: o.runs.map(compact) }));
    writeFileSync(join(outDir, 'advisor-runs.json'), JSON.stringify({ meta, tasks }) + '\n');
  }
  return rows;
}

function printTable(rows: Row[]): void {
  const ci = (m: number, lo: number, hi: number) => `${m.toFixed(3)} [${lo.toFixed(3)}, ${hi.toFixed(3)}]`;
  console.table(
    rows.map((r) => ({
      task: r.task,
      optimizer: r.optimizer,
      lr: `${r.lr}${r.lr_at_grid_edge ? ' (edge)' : ''}`,
      reached: `${r.n_reached}/${r.n_seeds}`,
      steps: Math.round(r.steps_to_target_median),
      'vs Muon': ci(r.ratio_vs_muon, r.ratio_vs_muon_ci_low, r.ratio_vs_muon_ci_high),
      'vs default': ci(r.ratio_vs_dynmuon_default, r.ratio_vs_dynmuon_default_ci_low, r.ratio_vs_dynmuon_default_ci_high),
    })),
  );
}

function sizeFromArgs(): Size {
  const named = arg('--size');
  if (named && process.argv.includes('--full') && named !== 'full') throw new Error(`--full and --size ${named} disagree`);
  const name = (named ?? (process.argv.includes('--full') ? 'full' : 'quick')) as SizeName;
  const size = SIZES[name];
  if (!size) throw new Error(`--size ${named}: expected one of ${Object.keys(SIZES).join(', ')}`);
  return size;
}

async function main() {
  const fromRuns = arg('--from-runs');
  if (fromRuns) {
    const outDir = resolve(arg('--out') ?? dirname(resolve(fromRuns)));
    const { outcomes, meta } = await outcomesFromRuns(fromRuns);
    printTable(writeOutputs(outDir, outcomes, meta, false));
    console.log(`re-analysed ${fromRuns}; wrote ${join(outDir, 'advisor.json')}, advisor.md and plots`);
    return;
  }
  const size = sizeFromArgs();
  const outDir = resolve(arg('--out') ?? (size.name === 'full' ? RESULTS : join(tmpdir(), `muonscope-advisor-${size.name}`)));
  // The committed report is the full run's; a smaller size never writes over it.
  if (size.name !== 'full' && outDir === resolve(RESULTS)) throw new Error(`--size ${size.name} would overwrite the full run's results in ${RESULTS}; pass another --out`);
  const variants = arg('--variants') ?? 'core';
  const optimizers = selectOptimizers(variants);
  const raceSteps = Number(arg('--race-steps') ?? DEFAULT_RACE_STEPS);
  if (!Number.isInteger(raceSteps) || raceSteps < 0) throw new Error(`--race-steps ${arg('--race-steps')}: expected a whole number ≥ 0 (0: no races)`);
  const plan: Plan = { size, optimizers, raceSteps: raceSteps > 0 && optimizers.some((o) => o.name === 'advisor') ? raceSteps : null };
  const taskNames = arg('--tasks')?.split(',') ?? size.tasks;
  const workers = Number(arg('--workers') ?? size.workers ?? Math.max(1, Math.min(2, cpus().length)));
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`--workers ${arg('--workers')}: expected a whole number ≥ 1`);
  const tasks = taskNames.map((n) => {
    const t = TASKS.find((x) => x.name === n);
    if (!t) throw new Error(`unknown task ${n}; tasks: ${TASKS.map((x) => x.name).join(', ')}`);
    return taskAtSize(t, size);
  });
  if (!optimizers.some((o) => o.name === REFERENCE)) throw new Error(`the optimizer set must include ${REFERENCE}, the reference`);

  const rev = currentRevision(REPO);
  const revision = rev.code;
  const store = ResultStore.open(join(outDir, 'advisor-jobs.jsonl'), revision, { resume: process.argv.includes('--resume'), fresh: process.argv.includes('--fresh') }, `${rev.commit}${rev.dirty ? '+dirty' : ''}`);
  console.log(`revision ${revisionLabel(rev)}; ${store.size} finished jobs in ${store.file}; writing to ${outDir}`);
  const planned = plannedJobs(tasks, plan);
  const isDone = (j: JobSpec) =>
    Number.isNaN(j.lr) ? false : !!store.get(jobKey(j, jobConfig(j), revision));
  const finishedTasks = new Set<string>();
  const pool = new Pool(workers, store, () => planned.filter((j) => !finishedTasks.has(j.task) && !isDone(j)));
  // Stop at once on a signal (something in the trainer's dependencies keeps SIGTERM from ending the
  // process by default): every finished job is already on disk, --resume continues from there.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      pool.close();
      store.close();
      console.log(`\n${signal}: stopped; ${store.size} finished jobs kept in ${store.file}; continue with --resume`);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  }
  const started = Date.now();
  const outcomes: TaskOutcome[] = [];
  try {
    for (const task of tasks) {
      outcomes.push(await evaluateTask(task, plan, pool));
      finishedTasks.add(task.name);
    }
  } finally {
    pool.close();
    store.close();
  }
  const meta: ReportMeta = {
    date: new Date().toISOString(),
    size: size.name,
    variants,
    revision: revisionLabel(rev),
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    minutes: (Date.now() - started) / 60000,
    evalSeeds: size.evalSeeds,
    tuningSeeds: size.tuningSeeds,
    maxExtensions: size.maxExtensions,
    raceSteps: plan.raceSteps,
  };
  printTable(writeOutputs(outDir, outcomes, meta, true));
  const perTask = outcomes.map((o) => `${o.task.name} ${(([...o.tuning, ...o.runs].reduce((a, r) => a + r.wallMs, 0) / 60000) || 0).toFixed(1)} job-min`).join(', ');
  console.log(`wrote ${join(outDir, 'advisor.json')}, advisor.md, advisor-runs.json and plots (${meta.minutes.toFixed(1)} min; ${perTask})`);
}

if (process.argv.includes('--worker')) {
  // A killed harness must not leave its workers training: the IPC channel closes with the parent.
  process.on('disconnect', () => process.exit(0));
  process.on('message', (msg: { index: number; job: JobSpec }) => {
    runJob(msg.job).then(
      (result) => process.send!({ index: msg.index, result }),
      (e) => process.send!({ index: msg.index, error: String((e as Error)?.stack ?? e) }),
    );
  });
} else {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}

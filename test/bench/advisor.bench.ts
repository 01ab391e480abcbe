// `npm run bench:advisor [-- --full] [-- --tasks a,b] [-- --workers N] [-- --from-runs FILE]`: the evidence harness (issue 6,
// docs/algorithms.md §7). Does DynMuon, and does the advisor in `auto`, reach a target loss in fewer steps than
// tuned Muon? Paired seeds, lr tuned per optimizer on separate seeds with the same grid, target fixed
// before the evaluation runs, median and bootstrap 95% CI of the paired ratio steps(X)/steps(Muon).
// Writes test/bench/results/advisor.json, advisor.md and SVG plots. A benchmark, not a test: the quick
// size (the default) is a smoke run of the protocol; conclusions need --full.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { runJob, type JobResult, type JobSpec } from './advisor/job.js';
import { OPTIMIZERS, SIZES, TASKS, type TaskSpec } from './advisor/plan.js';
import { forestPlotSvg, lossCurvesSvg, markdownReport, type TaskOutcome, type Row } from './advisor/report.js';
import { bootstrapMedianCi, median, pairedRatios, stepsToTarget } from './advisor/stats.js';

const RESULTS = join(__dirname, 'results');

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** Runs jobs on forked workers (each its own TF.js and onnxruntime), results in job order. */
async function runAll(jobs: JobSpec[], workers: number, label: string): Promise<JobResult[]> {
  const results = new Array<JobResult>(jobs.length);
  let next = 0;
  let done = 0;
  const startedAt = performance.now();
  const work = (child: ChildProcess) =>
    new Promise<void>((resolve, reject) => {
      const send = () => {
        if (next >= jobs.length) {
          child.kill();
          resolve();
          return;
        }
        const index = next++;
        child.once('message', (msg: { index: number; result?: JobResult; error?: string }) => {
          if (msg.error) {
            reject(new Error(`job ${JSON.stringify(jobs[msg.index])} failed: ${msg.error}`));
            return;
          }
          results[msg.index] = msg.result!;
          done++;
          const elapsed = (performance.now() - startedAt) / 1000;
          process.stdout.write(`\r${label}: ${done}/${jobs.length} runs, ${elapsed.toFixed(0)} s, ETA ${((elapsed / done) * (jobs.length - done)).toFixed(0)} s   `);
          send();
        });
        child.send({ index, job: jobs[index] });
      };
      child.on('error', reject);
      send();
    });
  const children = Array.from({ length: Math.min(workers, jobs.length) }, () => fork(__filename, ['--worker'], { execArgv: process.execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }));
  await Promise.all(children.map(work));
  process.stdout.write('\n');
  return results;
}

function tailLoss(r: JobResult): number {
  if (r.failure || r.evals.length === 0) return Infinity;
  const last = r.evals.slice(-3).map(([, l]) => l);
  return last.reduce((a, b) => a + b, 0) / last.length;
}

/** Loss at `step` by linear interpolation between evaluations. */
function lossAt(evals: [number, number][], step: number): number {
  for (let i = 1; i < evals.length; i++) {
    const [s0, l0] = evals[i - 1];
    const [s1, l1] = evals[i];
    if (step <= s1) return l0 + ((step - s0) / (s1 - s0)) * (l1 - l0);
  }
  return evals.at(-1)?.[1] ?? NaN;
}

type Grid = { muon: number[]; adamw: number[] };

/** The lr with the lowest mean tail validation loss over the tuning seeds, per optimizer. */
function tuneLr(tuning: JobResult[], grid: Grid): Record<string, number> {
  const tunedLr: Record<string, number> = {};
  for (const o of OPTIMIZERS) {
    let best = { lr: NaN, loss: Infinity };
    for (const lr of grid[o.family]) {
      const runs = tuning.filter((r) => r.optimizer === o.name && r.lr === lr);
      const loss = runs.reduce((a, r) => a + tailLoss(r), 0) / runs.length;
      if (loss < best.loss) best = { lr, loss };
    }
    tunedLr[o.name] = Number.isFinite(best.lr) ? best.lr : grid[o.family][0];
  }
  return tunedLr;
}

/** The target, from the task's rule and the tuning runs only (never from evaluation runs). */
function fixTarget(task: TaskSpec, tuning: JobResult[], tunedLr: Record<string, number>): { target: number; targetRule: string; floor: number | null } {
  const floor = tuning.find((r) => r.lossFloor !== null)?.lossFloor ?? null;
  if ('floorPlus' in task.target) {
    if (floor === null) throw new Error(`${task.name}: the target needs the task's loss floor`);
    return { target: floor + task.target.floorPlus, targetRule: `loss floor ${floor.toFixed(4)} + ${task.target.floorPlus}`, floor };
  }
  const at = task.target.muonAt * task.steps;
  const muonTuning = tuning.filter((r) => r.optimizer === 'muon' && r.lr === tunedLr.muon);
  return {
    target: median(muonTuning.map((r) => lossAt(r.evals, at))),
    targetRule: `median validation loss of tuned Muon at step ${at} (${task.target.muonAt * 100}% of the budget) on the tuning seeds`,
    floor,
  };
}

/** Steps to target per seed, paired ratios against Muon, their median and bootstrap CI, per optimizer. */
function analyse(task: TaskSpec, target: number, runs: JobResult[], evalSeeds: number[], tunedLr: Record<string, number>, grid: Grid): Row[] {
  const stepsOf = (name: string) =>
    evalSeeds.map((seed) => {
      const r = runs.find((x) => x.optimizer === name && x.seed === seed)!;
      return r.failure ? null : stepsToTarget(r.evals, target);
    });
  const muonSteps = stepsOf('muon');
  return OPTIMIZERS.map((o) => {
    const steps = stepsOf(o.name);
    const reached = steps.filter((s): s is number => s !== null);
    const ratios = pairedRatios(steps, muonSteps, task.steps);
    const ci = bootstrapMedianCi(ratios);
    const family = grid[o.family];
    return {
      task: task.name,
      optimizer: o.name,
      label: o.label,
      lr: tunedLr[o.name],
      lr_at_grid_edge: tunedLr[o.name] === Math.min(...family) || tunedLr[o.name] === Math.max(...family),
      n_seeds: steps.length,
      n_reached: reached.length,
      steps_to_target_median: reached.length === steps.length ? median(reached) : median(steps.map((s) => s ?? Infinity)),
      ratio_vs_muon: median(ratios),
      ci_low: ci.low,
      ci_high: ci.high,
    };
  });
}

async function evaluateTask(task: TaskSpec, size: (typeof SIZES)['full'], workers: number): Promise<TaskOutcome> {
  // 1. Tune lr per optimizer on the tuning seeds, the same grid for every optimizer of a family.
  const grid = size.name === 'full' && task.fullTuning ? task.fullTuning.grid : size.grid;
  const tuningSeeds = size.name === 'full' && task.fullTuning ? task.fullTuning.seeds : size.tuningSeeds;
  const tuningJobs: JobSpec[] = [];
  for (const o of OPTIMIZERS) for (const lr of grid[o.family]) for (const seed of tuningSeeds) tuningJobs.push({ task: task.name, optimizer: o.name, lr, seed });
  const tuning = await runAll(tuningJobs, workers, `${task.name}: tuning`);
  const tunedLr = tuneLr(tuning, grid);
  // 2. Fix the target before any evaluation run.
  const { target, targetRule, floor } = fixTarget(task, tuning, tunedLr);
  // 3. Evaluation runs on fresh seeds.
  const evalJobs: JobSpec[] = [];
  for (const o of OPTIMIZERS) for (const seed of size.evalSeeds) evalJobs.push({ task: task.name, optimizer: o.name, lr: tunedLr[o.name], seed });
  const runs = await runAll(evalJobs, workers, `${task.name}: evaluation`);
  const rows = analyse(task, target, runs, size.evalSeeds, tunedLr, grid);
  return { task, target, targetRule, floor, rows, runs, tuning, tunedLr, tuningSeeds, grid };
}

/** Redoes the analysis and the report from a saved advisor-runs.json, without training. */
function outcomesFromRuns(file: string): { outcomes: TaskOutcome[]; meta: Meta } {
  const saved = JSON.parse(readFileSync(file, 'utf8')) as { meta: Meta; tasks: { task: string; tuning: JobResult[]; evaluation: JobResult[] }[] };
  const outcomes = saved.tasks.map((t) => {
    const task = TASKS.find((x) => x.name === t.task)!;
    const lrsOf = (family: 'muon' | 'adamw') => [...new Set(t.tuning.filter((r) => OPTIMIZERS.find((o) => o.name === r.optimizer)?.family === family).map((r) => r.lr))].sort((a, b) => a - b);
    const grid = { muon: lrsOf('muon'), adamw: lrsOf('adamw') };
    const tuningSeeds = [...new Set(t.tuning.map((r) => r.seed))].sort((a, b) => a - b);
    const evalSeeds = [...new Set(t.evaluation.map((r) => r.seed))].sort((a, b) => a - b);
    const tunedLr = tuneLr(t.tuning, grid);
    const { target, targetRule, floor } = fixTarget(task, t.tuning, tunedLr);
    return { task, target, targetRule, floor, rows: analyse(task, target, t.evaluation, evalSeeds, tunedLr, grid), runs: t.evaluation, tuning: t.tuning, tunedLr, tuningSeeds, grid };
  });
  return { outcomes, meta: saved.meta };
}

interface Meta {
  date: string;
  size: string;
  cpu: string;
  cores: number;
  node: string;
  minutes: number;
  evalSeeds: number[];
  tuningSeeds: number[];
}

function writeOutputs(outcomes: TaskOutcome[], meta: Meta, saveRuns: boolean): Row[] {
  mkdirSync(RESULTS, { recursive: true });
  const rows = outcomes.flatMap((o) => o.rows);
  writeFileSync(join(RESULTS, 'advisor.json'), JSON.stringify({ meta, rows: rows.map(({ label: _l, ...r }) => r), targets: outcomes.map((o) => ({ task: o.task.name, target: o.target, rule: o.targetRule, tunedLr: o.tunedLr })) }, null, 1) + '\n');
  for (const o of outcomes) {
    writeFileSync(join(RESULTS, `advisor-${o.task.name}-loss.svg`), lossCurvesSvg(o));
    writeFileSync(join(RESULTS, `advisor-${o.task.name}-ratios.svg`), forestPlotSvg(o));
  }
  writeFileSync(join(RESULTS, 'advisor.md'), markdownReport(outcomes, meta));
  if (saveRuns) {
    // Every run's validation curve, so the analysis can be redone without training (--from-runs).
    const compact = (r: JobResult) => ({ ...r, evals: r.evals.map(([s, l]) => [s, Number(l.toPrecision(5))]), wallMs: Math.round(r.wallMs) });
    writeFileSync(join(RESULTS, 'advisor-runs.json'), JSON.stringify({ meta, tasks: outcomes.map((o) => ({ task: o.task.name, target: o.target, tunedLr: o.tunedLr, tuning: o.tuning.map(compact), evaluation: o.runs.map(compact) })) }) + '\n');
  }
  return rows;
}

function printTable(rows: Row[]): void {
  console.table(rows.map((r) => ({ task: r.task, optimizer: r.optimizer, lr: r.lr, reached: `${r.n_reached}/${r.n_seeds}`, steps: Math.round(r.steps_to_target_median), ratio: r.ratio_vs_muon.toFixed(3), ci: `[${r.ci_low.toFixed(3)}, ${r.ci_high.toFixed(3)}]` })));
}

async function main() {
  const fromRuns = arg('--from-runs');
  if (fromRuns) {
    const { outcomes, meta } = outcomesFromRuns(fromRuns);
    printTable(writeOutputs(outcomes, meta, false));
    console.log(`re-analysed ${fromRuns}; wrote ${join(RESULTS, 'advisor.json')}, advisor.md and plots`);
    return;
  }
  const size = SIZES[process.argv.includes('--full') ? 'full' : 'quick'];
  const taskNames = arg('--tasks')?.split(',') ?? size.tasks;
  const workers = Number(arg('--workers') ?? Math.max(1, Math.min(2, cpus().length)));
  const tasks = taskNames.map((n) => {
    const t = TASKS.find((x) => x.name === n);
    if (!t) throw new Error(`unknown task ${n}; tasks: ${TASKS.map((x) => x.name).join(', ')}`);
    return t;
  });
  const started = Date.now();
  const outcomes: TaskOutcome[] = [];
  for (const task of tasks) outcomes.push(await evaluateTask(task, size, workers));
  const meta: Meta = { date: new Date().toISOString(), size: size.name, cpu: cpus()[0]?.model.trim() ?? 'unknown', cores: cpus().length, node: process.version, minutes: (Date.now() - started) / 60000, evalSeeds: size.evalSeeds, tuningSeeds: size.tuningSeeds };
  printTable(writeOutputs(outcomes, meta, true));
  console.log(`wrote ${join(RESULTS, 'advisor.json')}, advisor.md, advisor-runs.json and plots (${meta.minutes.toFixed(1)} min)`);
}

if (process.argv.includes('--worker')) {
  process.on('message', (msg: { index: number; job: JobSpec }) => {
    runJob(msg.job).then(
      (result) => process.send!({ index: msg.index, result }),
      (e) => process.send!({ index: msg.index, error: String((e as Error)?.stack ?? e) }),
    );
  });
} else {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}

// `npm run bench:advisor-phase [-- --tasks markov,ts-smooth] [--seeds N]`: why the advisor cannot close
// DynMuon's gap to Muon on the sequence tasks (docs/algorithms.md §7). A benchmark, not a test.
//
// The full evidence run (`bench:advisor -- --full`, results/advisor.json) found DynMuon exact with the published
// logistic schedule 1.31× tuned Muon's steps on the Markov task and 0.62× on teacher–student, and the advisor
// in auto no different from that schedule anywhere. The schedule starts at p = 1 and falls to −0.25 by 4% of the
// run. This bench separates the two phases, at the tuned lrs and against the targets of that full run:
//  (a) steps to target, paired by seed, for Muon, the published schedule, the same schedule ending its p > 0
//      phase at 1.5% of the run instead of 4% (what a retime at the first diagnostics could do at best), and
//      the schedule's later value alone (constant p = −0.25) at the tuned lr and at twice it;
//  (b) what the advisor sees before it could act: η/η* before the step and the overshoot fraction at the first
//      whole-model curvature probe (step 16 at the bench's cadence), per seed, on every task.
// Writes test/bench/results/advisor-phase.json and advisor-phase.md.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { readRunLog } from '../../common/run-folder/log.js';
import type { ScheduleSpec } from '../../common/schedules.js';
import { validateRunConfig } from '../../trainer/run/config.js';
import { startSession } from '../../trainer/run/session.js';
import { DYNMUON_REPO_LOGISTIC } from '../../trainer/optim/schedules.js';
import { targetCurve } from './advisor/analysis.js';
import { jobConfig, runJob } from './advisor/job.js';
import { OPTIMIZERS, TASKS, type OptimizerSpec } from './advisor/plan.js';
import { bootstrapMedianCi, median, pairedRatios, stepsToTarget } from './advisor/stats.js';
import { currentRevision, revisionLabel } from './advisor/store.js';

const ROOT = join(__dirname, '..', '..');
const RESULTS = join(__dirname, 'results');

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
}
const TASK_NAMES = (arg('--tasks') ?? 'markov,ts-smooth').split(',');
const SEEDS = Array.from({ length: Number(arg('--seeds') ?? 5) }, (_, i) => i + 1);
const PROBE_TASKS = ['markov', 'text', 'ts-smooth', 'ts-illcond'];
/** Steps run for (b): the first curvature probe is at step 16 at the advisor runs' cadence. */
const PROBE_STOP_STEP = 20;

interface FullRun {
  targets: { task: string; target: number; tuned: Record<string, { lr: number }> }[];
}
const full = JSON.parse(readFileSync(join(RESULTS, 'advisor.json'), 'utf8')) as FullRun;

/** The published schedule's p > 0 phase ended at 1.5% of the run (τ 0.04 → 0.015, width 0.04 → 0.01). */
const SHORT_WARM: ScheduleSpec = { ...(DYNMUON_REPO_LOGISTIC as Extract<ScheduleSpec, { type: 'logistic' }>), tau: 0.015, width: 0.01 };
const dynmuon = (name: string, label: string, schedule: ScheduleSpec): OptimizerSpec => ({
  name,
  label,
  family: 'muon',
  core: false,
  config: (lr) => ({ optimizer: { type: 'dynmuon', lr, mode: 'exact', schedule }, advisor: { mode: 'off' } }),
});
const ARMS_OPTIMIZERS = [dynmuon('phase-short-warm', 'published logistic, p > 0 phase ended at 1.5%', SHORT_WARM), dynmuon('phase-constant', 'constant p = −0.25', { type: 'constant', p: -0.25 })];
for (const o of ARMS_OPTIMIZERS) if (!OPTIMIZERS.some((x) => x.name === o.name)) OPTIMIZERS.push(o);

interface Arm { optimizer: string; label: string; lr: number }
function armsOf(task: string): Arm[] {
  const tuned = full.targets.find((t) => t.task === task)!.tuned;
  const dyn = tuned.exact.lr;
  return [
    { optimizer: 'muon', label: 'Muon (tuned)', lr: tuned.muon.lr },
    { optimizer: 'exact', label: 'DynMuon exact, published logistic (tuned)', lr: dyn },
    { optimizer: 'phase-short-warm', label: 'p > 0 phase ended at 1.5% (published lr)', lr: dyn },
    { optimizer: 'phase-constant', label: 'constant p = −0.25 (published lr)', lr: dyn },
    { optimizer: 'phase-constant', label: 'constant p = −0.25 (2 × published lr)', lr: 2 * dyn },
  ];
}

/** (b): the first whole-model curvature probe of an advisor run, the run stopped soon after. */
async function firstProbe(task: string, seed: number) {
  const spec = TASKS.find((t) => t.name === task)!;
  const lr = full.targets.find((t) => t.task === task)!.tuned.exact.lr;
  const cfg = jobConfig({ task, optimizer: 'advisor', lr, seed, steps: spec.steps, evalEvery: spec.evalEvery }) as Record<string, unknown>;
  cfg.advisor = { ...(cfg.advisor as object), mode: 'suggest' };
  const checked = validateRunConfig(cfg);
  if (!checked.ok) throw new Error(JSON.stringify(checked.issues));
  const root = mkdtempSync(join(tmpdir(), 'muonscope-phase-'));
  try {
    const session = await startSession({ config: checked.config, configDir: ROOT, runsRoot: root, onLine: () => undefined });
    let asked = false;
    session.trainer.observers.push({
      afterUpdate: async ({ step }) => {
        if (step >= PROBE_STOP_STEP && !asked) {
          asked = true;
          void session.trainer.enqueue({ kind: 'stop', reason: 'first probe taken' }, { source: 'bench' }).catch(() => undefined);
        }
      },
    });
    await session.done;
    const probe = readRunLog(session.paths.log).records.find((r) => r.kind === 'curvature' && r.layer === null && r.etaStarBefore !== undefined);
    if (!probe || probe.kind !== 'curvature') return { task, seed, step: null, etaRatio: null, overshootFraction: null, overshootSteps: null };
    const etaRatio = probe.etaStarBefore ? probe.etaActual / probe.etaStarBefore : null;
    return { task, seed, step: probe.step, etaRatio, overshootFraction: probe.overshootFraction ?? null, overshootSteps: probe.overshootSteps ?? null };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

const f = (x: number | null, d = 3) => (x === null || !Number.isFinite(x) ? '—' : x.toFixed(d));

(async () => {
  const started = performance.now();
  const revision = currentRevision(ROOT);
  const md: string[] = [
    '# Advisor phase report',
    '',
    `Generated by \`npm run bench:advisor-phase\` on ${new Date().toISOString().slice(0, 10)} at revision ${revisionLabel(revision)} (${cpus()[0]?.model.split(' ').slice(0, 2).join(' ')}, ${cpus().length} cores).`,
    `Seeds ${SEEDS.join(', ')}; lrs and targets from the full evidence run (advisor.json). Ratios: median over seeds of the paired ratio, percentile bootstrap 95% CI; a run that never reaches the target counts as the budget.`,
    '',
  ];
  const json: Record<string, unknown> = { date: new Date().toISOString(), revision: revisionLabel(revision), seeds: SEEDS, tasks: [] as unknown[], firstProbe: [] as unknown[] };

  for (const task of TASK_NAMES) {
    const spec = TASKS.find((t) => t.name === task);
    if (!spec) throw new Error(`--tasks: unknown task ${task}`);
    const target = full.targets.find((t) => t.task === task)!.target;
    const arms = armsOf(task);
    const steps: (number | null)[][] = [];
    for (const arm of arms) {
      const row: (number | null)[] = [];
      for (const seed of SEEDS) {
        const r = await runJob({ task, optimizer: arm.optimizer, lr: arm.lr, seed, steps: spec.steps, evalEvery: spec.evalEvery });
        row.push(r.failure ? null : stepsToTarget(targetCurve(spec, r), target));
        process.stdout.write(`${task} ${arm.label} lr ${arm.lr} seed ${seed}: ${row.at(-1) === null ? 'not reached' : row.at(-1)!.toFixed(1)}\n`);
      }
      steps.push(row);
    }
    md.push(`## ${task}`, '', `Target ${target.toPrecision(4)} (the full run's), budget ${spec.steps} steps.`, '', '| arm | lr | reached | median steps | vs Muon [95% CI] | vs published schedule [95% CI] |', '|---|---|---|---|---|---|');
    const rows = arms.map((arm, i) => {
      const vsMuon = pairedRatios(steps[i], steps[0], spec.steps);
      const vsDefault = pairedRatios(steps[i], steps[1], spec.steps);
      const ciM = bootstrapMedianCi(vsMuon);
      const ciD = bootstrapMedianCi(vsDefault);
      const reached = steps[i].filter((s) => s !== null) as number[];
      md.push(`| ${arm.label} | ${arm.lr} | ${reached.length}/${SEEDS.length} | ${f(reached.length ? median(reached) : null, 0)} | ${f(median(vsMuon))} [${f(ciM.low)}, ${f(ciM.high)}] | ${f(median(vsDefault))} [${f(ciD.low)}, ${f(ciD.high)}] |`);
      return { ...arm, steps: steps[i], ratioVsMuon: median(vsMuon), ratioVsMuonCi: ciM, ratioVsPublished: median(vsDefault), ratioVsPublishedCi: ciD };
    });
    (json.tasks as unknown[]).push({ task, target, rows });
    md.push('');
  }

  md.push('## What the advisor sees first', '', `The first whole-model curvature probe of an advisor run (diagnostics every 20, 50% budget, as in the full run), the run stopped at step ${PROBE_STOP_STEP}: η/η* before the step (> 1: past the quadratic optimum along the update) and the fraction of the steps so far with g_{t+1}ᵀd_t < 0.`, '', '| task | seed | step | η/η* | overshoot fraction |', '|---|---|---|---|---|');
  for (const task of PROBE_TASKS) {
    for (const seed of SEEDS) {
      const p = await firstProbe(task, seed);
      (json.firstProbe as unknown[]).push(p);
      md.push(`| ${task} | ${seed} | ${p.step ?? '—'} | ${f(p.etaRatio, 2)} | ${p.overshootFraction === null ? '—' : `${f(p.overshootFraction, 2)} of ${p.overshootSteps}`} |`);
      process.stdout.write(`first probe ${task} seed ${seed}: step ${p.step} η/η* ${f(p.etaRatio, 2)} overshoot ${f(p.overshootFraction, 2)}\n`);
    }
  }
  json.minutes = (performance.now() - started) / 60000;
  md.push('', `${(json.minutes as number).toFixed(1)} minutes.`);
  writeFileSync(join(RESULTS, 'advisor-phase.json'), `${JSON.stringify(json, null, 1)}\n`);
  writeFileSync(join(RESULTS, 'advisor-phase.md'), `${md.join('\n')}\n`);
  process.stdout.write(`${md.join('\n')}\nwrote test/bench/results/advisor-phase.{json,md}\n`);
})();

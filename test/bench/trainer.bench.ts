// `npm run bench:trainer`: two measurements. A benchmark, not a test.
//
// 1. The first ten minutes: the default run as `npm start` runs it (the build, then the CLI with no
//    config), timed from spawn: when the printed loss first reaches 3.0, when every dashboard chart has
//    data, how long the run takes; and the diagnostics overhead counted from step 0, as the wall time from
//    step 0 to the last step against the same run with nothing watching it (no diagnostics, no advisor),
//    in pairs of alternating order (`--repeat N` pairs, default 1). Writes results/default-run.json.
// 2. Throughput of the default models with each optimizer, and PyTorch CPU on the same transformer in the
//    same run. Writes results/trainer.json.
//
// `--only default-run` or `--only throughput` runs one of them; `--quick` shortens both (default run cut
// to 300 steps) and writes *.quick.json. Other work on the machine skews every figure: each run records
// the 1-minute load average at its start and end.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { readRunLog } from '../../common/run-folder/log.js';
import { validateRunConfig, type RunConfig } from '../../trainer/run/config.js';
import { startSession } from '../../trainer/run/session.js';
import { timeDefaultRun, UNOBSERVED, type RunTimeline } from './default-run.js';

const ROOT = join(__dirname, '..', '..');
const RESULTS = join(__dirname, 'results');
const LOSS_TARGET = 3.0;

const { values: flags } = parseArgs({ options: { quick: { type: 'boolean', default: false }, repeat: { type: 'string', default: '1' }, only: { type: 'string' } } });
const QUICK = flags.quick!;

function config(raw: Record<string, unknown>): RunConfig {
  const r = validateRunConfig(raw);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.config;
}

function writeResult(name: string, data: unknown): void {
  mkdirSync(RESULTS, { recursive: true });
  const file = join(RESULTS, `${name}${QUICK ? '.quick' : ''}.json`);
  writeFileSync(file, JSON.stringify(data, null, 1) + '\n');
  console.log(`wrote ${file}`);
}

/** The commit measured, and whether the working tree differed from it. */
function revision(): { commit: string; dirty: boolean } | null {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();
    return { commit: git('rev-parse', 'HEAD'), dirty: git('status', '--porcelain', '--untracked-files=no') !== '' };
  } catch {
    return null;
  }
}

const meta = () => ({ date: new Date().toISOString(), revision: revision(), cpu: cpus()[0]?.model, cores: cpus().length, node: process.version, load: +loadavg()[0].toFixed(2) });

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

// ---------- 1. the first ten minutes ----------

async function defaultRun(): Promise<void> {
  const pairs = Math.max(1, Number(flags.repeat));
  const started = Date.now();
  execFileSync(process.execPath, [join(ROOT, 'esbuild.mjs')], { cwd: ROOT, stdio: 'inherit' });
  const buildS = +((Date.now() - started) / 1000).toFixed(2);
  const cli = join(ROOT, 'dist', 'trainer', 'cli.js');
  const shorten = QUICK ? { steps: 300 } : null;
  const defaults = config(shorten ?? {});
  console.log(`build (node esbuild.mjs) ${buildS} s; default run: ${defaults.steps} steps, batch ${defaults.batchSize}, diagnostics every ${defaults.diagnostics.every} (budget ${defaults.diagnostics.budgetPct}%)`);
  const observed: RunTimeline[] = [];
  const unobserved: RunTimeline[] = [];
  const timeout = 20 * 60_000;
  for (let i = 0; i < pairs; i++) {
    // Alternating order, so that a drift in the machine's load does not favour either.
    for (const watched of i % 2 === 0 ? [true, false] : [false, true]) {
      const t = await timeDefaultRun(cli, watched ? shorten : { ...shorten, ...UNOBSERVED }, LOSS_TARGET, timeout);
      (watched ? observed : unobserved).push(t);
      console.log(
        `  ${watched ? 'default run       ' : 'nothing watching  '} load ${t.load[0]}→${t.load[1]}  step 0→${t.steps - 1} ${t.step0ToEndS} s  whole run ${t.totalS} s` +
          (watched ? `  loss ≤ ${LOSS_TARGET} at ${t.lossTargetS ?? '–'} s (10-step mean ${t.lossTargetMean10S ?? '–'} s)  every chart at ${t.allChartsS ?? 'never'} s  trainer-reported overhead ${t.reportedOverheadPct}%` : ''),
      );
    }
  }
  const ratios = observed.map((o, i) => o.step0ToEndS / unobserved[i].step0ToEndS);
  const overheadPct = ratios.map((r) => +(100 * (r - 1)).toFixed(1));
  const rows = [
    ['time to the first printed loss ≤ 3.0 (from npm start: build + spawn)', observed.map((o) => (o.lossTargetS === null ? '–' : `${(buildS + o.lossTargetS).toFixed(1)} s`))],
    ['  … 10-step mean ≤ 3.0', observed.map((o) => (o.lossTargetMean10S === null ? '–' : `${(buildS + o.lossTargetMean10S).toFixed(1)} s`))],
    ['every chart has data (from npm start)', observed.map((o) => (o.allChartsS === null ? 'never' : `${(buildS + o.allChartsS).toFixed(1)} s`))],
    ['whole default run (from npm start)', observed.map((o) => `${(buildS + o.totalS).toFixed(1)} s`)],
    ['step 0 → last step, default run', observed.map((o) => `${o.step0ToEndS} s`)],
    ['step 0 → last step, nothing watching', unobserved.map((o) => `${o.step0ToEndS} s`)],
    ['diagnostics overhead from step 0', overheadPct.map((p) => `${p}%`)],
    ['final loss (last 50 steps) / validation / floor', observed.map((o) => `${o.finalLoss} / ${o.finalValLoss} / ${o.lossFloor?.toFixed(3)}`)],
    ['load average (start → end of each run)', observed.map((o, i) => `${o.load.join('→')}, ${unobserved[i].load.join('→')}`)],
  ] as const;
  console.log(`\n| measure | ${observed.map((_, i) => `pair ${i + 1}`).join(' | ')} |\n|---|${observed.map(() => '---').join('|')}|`);
  for (const [label, cells] of rows) console.log(`| ${label} | ${cells.join(' | ')} |`);
  console.log(`\nmedian overhead from step 0: ${median(overheadPct)}%; charts of the first default run:`);
  for (const c of observed[0].charts) console.log(`  ${c.view.padEnd(18)} ${c.chart.padEnd(46)} ${c.s === null ? 'never' : `${c.s} s after spawn`}`);
  writeResult('default-run', {
    meta: { ...meta(), buildS, lossTarget: LOSS_TARGET, pairs, config: defaults },
    medianOverheadPct: median(overheadPct),
    overheadPct,
    observed,
    unobserved,
  });
}

// ---------- 2. throughput ----------

interface Row {
  model: string;
  optimizer: string;
  backend: string;
  steps_per_s: number;
  tokens_per_s: number;
  torch_tokens_per_s: number | null;
  ratio: number | null;
}

/** Wall time per step over a run, excluding the first steps (session start, first compilations). */
async function timeRun(c: RunConfig, warmup: number): Promise<{ msPerStep: number; tokensPerStep: number; backend: string }> {
  const session = await startSession({ config: c, configDir: process.cwd(), runsRoot: mkdtempSync(join(tmpdir(), 'muonscope-bench-')) });
  await session.done;
  const records = readRunLog(session.paths.log).records;
  const steps = records.filter((r) => r.kind === 'step');
  // t is the time each step record was written; the span between them includes evals.
  const first = steps[warmup];
  const last = steps[steps.length - 1];
  const msPerStep = (last.t - first.t) / (steps.length - 1 - warmup);
  return { msPerStep, tokensPerStep: session.workload.tokensPerBatch, backend: session.backend.chosen };
}

function torchTokensPerSecond(model: Record<string, unknown>): number | null {
  try {
    const out = execFileSync('python3', [join(__dirname, 'torch_transformer.py'), JSON.stringify(model)], { encoding: 'utf8', timeout: 600_000 });
    return (JSON.parse(out) as { tokens_per_s: number }).tokens_per_s;
  } catch (e) {
    console.warn(`torch reference unavailable (${String((e as Error).message).split('\n')[0]})`);
    return null;
  }
}

async function throughput(): Promise<void> {
  const steps = QUICK ? 30 : 150;
  const warmup = 5;
  const defaults = config({});
  if (defaults.model.type !== 'transformer' || defaults.task.type !== 'markov') throw new Error('the default run is no longer the transformer on the Markov source');
  const { width, layers, heads, contextLength } = defaults.model;
  const batchSize = defaults.batchSize;
  const workloads = [
    { label: `transformer ${width}×${layers}, context ${contextLength} (Markov)`, base: { task: defaults.task, batchSize } },
    { label: 'MLP 64→256→256→16 (teacher–student)', base: { model: { type: 'mlp', hiddenDims: [256, 256] }, task: { type: 'teacherStudent' }, batchSize: 256 } },
  ];
  const optimizers = [{ type: 'dynmuon' }, { type: 'muon' }, { type: 'adamw' }];
  const torch = torchTokensPerSecond({ vocabSize: defaults.task.vocabSize, mlpRatio: 4, batchSize, width, layers, heads, contextLength });
  const rows: Row[] = [];
  for (const w of workloads) {
    for (const o of optimizers) {
      // Nothing watching: the diagnostics' cost is the first measurement's business.
      const plain = await timeRun(config({ name: 'bench', steps, evalEvery: 1_000_000, checkpointEvery: 1_000_000, optimizer: o, ...UNOBSERVED, ...w.base }), warmup);
      const isTransformer = w.label.startsWith('transformer');
      const tokensPerS = (plain.tokensPerStep * 1000) / plain.msPerStep;
      const row: Row = {
        model: w.label,
        optimizer: o.type,
        backend: plain.backend,
        steps_per_s: +(1000 / plain.msPerStep).toFixed(2),
        tokens_per_s: Math.round(tokensPerS),
        torch_tokens_per_s: isTransformer && torch ? Math.round(torch) : null,
        ratio: isTransformer && torch ? +(torch / tokensPerS).toFixed(2) : null,
      };
      rows.push(row);
      console.log(
        [row.model.padEnd(40), row.optimizer.padEnd(8), row.backend.padEnd(5), `${row.steps_per_s} steps/s`.padEnd(15), `${row.tokens_per_s} tok/s`.padEnd(14),
          `torch ${row.torch_tokens_per_s ?? '-'} tok/s`.padEnd(18), `torch/ours ${row.ratio ?? '-'}`].join(' '),
      );
    }
  }
  writeResult('trainer', { meta: { ...meta(), steps, batchSize }, rows });
}

async function main() {
  if (flags.only !== undefined && flags.only !== 'default-run' && flags.only !== 'throughput') throw new Error(`--only takes default-run or throughput, got ${flags.only}`);
  if (flags.only !== 'throughput') await defaultRun();
  if (flags.only !== 'default-run') await throughput();
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});

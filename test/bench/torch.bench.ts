// `npm run bench:torch`: what Muonscope costs a PyTorch run. A benchmark, not a test.
//
// (a) watch's overhead at its default cadence (diagnostics every 100 steps within a 4% budget, curvature
//     and noise probes on) on examples/torch/train.py: the same run with and without muonscope.watch, in
//     `--pairs N` pairs of alternating order (default 3), each in a fresh Python process
//     (test/bench/torch_watch_bench.py); the ratio watched/plain per pair and its median. And, from each
//     watched run, the time inside watch's own code over the rest of the run (`own`): the same overhead
//     without the pairs' run-to-run spread (±10% on a 2-core machine), leaving out only any slowing of the
//     training's own work by watch's memory and caches.
// (b) DynMuon's torch step (method "matmul", p = −0.25) against torch.optim.Muon with float32 Newton–Schulz
//     at 1024×1024 and 1024×4096, in the same process, median of `--repeats N` (default 20) each
//     (test/bench/torch_dynmuon_bench.py).
// (c) both again on CUDA when torch sees a GPU; otherwise rows that say they were not measured.
// (d) data parallel, CPU, gloo, one thread per rank (test/bench/torch_ddp_bench.py): watch's overhead on a
//     2-rank DDP run at the default cadence (`--pairs` pairs of `--ddp-steps` steps, default 200, alternating
//     order), and the diagnostics' cost per rank with 1 and with 2 ranks, every due diagnostic run every 10
//     steps on the same model and per-rank batch: (wall − wall without watch) per step, and the time inside
//     the diagnostics on the slower rank per step (no subtraction of a separate run, whose own spread on
//     this machine is ±10%), and their ratios.
//
// Python is .venv/bin/python (`bash test/python/venv.sh`; `--python PATH` for another). Writes
// test/bench/results/torch.json. `--smoke` checks the harness end to end with tiny sizes (6 steps, one
// pair, 64×64 and 64×256, 3 repeats) and writes to a temporary file instead: its figures mean nothing.
// Other work on the machine skews every figure: the 1-minute load average is recorded at start and end.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = join(__dirname, '..', '..');
const RESULTS = join(__dirname, 'results');

const { values: flags } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    pairs: { type: 'string', default: '3' },
    repeats: { type: 'string', default: '20' },
    steps: { type: 'string', default: '300' },
    'ddp-steps': { type: 'string', default: '200' },
    python: { type: 'string', default: join(ROOT, '.venv', 'bin', 'python') },
  },
});
const SMOKE = flags.smoke!;

function positive(name: string, raw: string): number {
  if (!/^[1-9]\d*$/.test(raw)) throw new Error(`--${name} must be a positive integer, got "${raw}"`);
  return Number(raw);
}
const PAIRS = SMOKE ? 1 : positive('pairs', flags.pairs!);
const REPEATS = SMOKE ? 3 : positive('repeats', flags.repeats!);
const STEPS = SMOKE ? 6 : positive('steps', flags.steps!);
const DDP_STEPS = SMOKE ? 10 : positive('ddp-steps', flags['ddp-steps']!);
const SIZES: Array<[number, number]> = SMOKE ? [[64, 64], [64, 256]] : [[1024, 1024], [1024, 4096]];
const PYTHON = flags.python!;
if (!existsSync(PYTHON)) throw new Error(`no Python at ${PYTHON}: run \`bash test/python/venv.sh\` or pass --python PATH`);

function python(args: string[]): string {
  return execFileSync(PYTHON, args, { cwd: ROOT, encoding: 'utf8', timeout: 3_600_000, maxBuffer: 16 << 20 });
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

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

interface WatchRun { mode: 'watch' | 'plain'; wall_s: number; own_s: number | null; torch: string; threads: number; cuda: string | null }
interface WatchPair { first: string; plainS: number; watchS: number; ratio: number; ownS: number; ownPct: number }
interface WatchOverhead { device: string; steps: number; pairs: WatchPair[]; medianRatio: number; overheadPct: number; medianOwnPct: number }
interface OptimRow { m: number; n: number; repeats: number; muon_fp32_ms: number; dynmuon_matmul_ms: number; ratio: number }
interface OptimResult { torch: string; threads: number; device: string; cuda: string | null; results: OptimRow[] }

/** (a): the example with and without watch, one fresh process per run, alternating which goes first. */
function watchOverhead(device: 'cpu' | 'cuda'): WatchOverhead {
  const out = mkdtempSync(join(tmpdir(), 'muonscope-torch-bench-'));
  try {
    const args = ['--steps', String(STEPS), '--device', device, '--seed', '0', '--out', out];
    const once = (mode: 'watch' | 'plain'): WatchRun => JSON.parse(python([join(__dirname, 'torch_watch_bench.py'), mode, ...args]).trim().split('\n').at(-1)!);
    const pairs = [];
    for (let i = 0; i < PAIRS; i++) {
      const order: Array<'watch' | 'plain'> = i % 2 === 0 ? ['plain', 'watch'] : ['watch', 'plain'];
      const runs = Object.fromEntries(order.map((mode) => [mode, once(mode)])) as Record<'watch' | 'plain', WatchRun>;
      const ownS = runs.watch.own_s ?? NaN;
      const pair: WatchPair = { first: order[0], plainS: runs.plain.wall_s, watchS: runs.watch.wall_s, ratio: runs.watch.wall_s / runs.plain.wall_s, ownS, ownPct: (100 * ownS) / (runs.watch.wall_s - ownS) };
      console.log(`  ${device} pair ${i + 1}/${PAIRS} (${pair.first} first): plain ${pair.plainS.toFixed(1)} s, watched ${pair.watchS.toFixed(1)} s, ratio ${pair.ratio.toFixed(3)}; watch's own time ${pair.ownS.toFixed(2)} s = ${pair.ownPct.toFixed(2)}% of the rest`);
      pairs.push(pair);
    }
    const medianRatio = median(pairs.map((p) => p.ratio));
    return { device, steps: STEPS, pairs, medianRatio, overheadPct: (medianRatio - 1) * 100, medianOwnPct: median(pairs.map((p) => p.ownPct)) };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

interface DdpRun { world: number; mode: 'plain' | 'watch' | 'diag'; steps: number; wall_s: number; own_s: number[] | null; diag_s: number[] | null }
interface DdpResult {
  steps: number;
  overhead: { pairs: Array<{ first: string; plainS: number; watchS: number; ratio: number; ownS: number[]; ownPct: number }>; medianRatio: number; overheadPct: number; medianOwnPct: number };
  diagnostics: Array<{ world: number; plainS: number; diagS: number; msPerStep: number; insideS: number[]; insideMsPerStep: number }>;
  perRankRatio: number;
  perRankInsideRatio: number;
}

/** (d): DDP runs, each a fresh set of processes. */
function dataParallel(): DdpResult {
  const once = (world: number, mode: DdpRun['mode']): DdpRun => JSON.parse(python([join(__dirname, 'torch_ddp_bench.py'), String(world), mode, String(DDP_STEPS)]).trim().split('\n').at(-1)!);
  const pairs = [];
  for (let i = 0; i < PAIRS; i++) {
    const order: Array<'plain' | 'watch'> = i % 2 === 0 ? ['plain', 'watch'] : ['watch', 'plain'];
    const runs = Object.fromEntries(order.map((mode) => [mode, once(2, mode)])) as Record<'plain' | 'watch', DdpRun>;
    const ownS = runs.watch.own_s ?? [];
    const slowest = Math.max(...ownS);
    const pair = { first: order[0], plainS: runs.plain.wall_s, watchS: runs.watch.wall_s, ratio: runs.watch.wall_s / runs.plain.wall_s, ownS, ownPct: (100 * slowest) / (runs.watch.wall_s - slowest) };
    console.log(`  ddp overhead pair ${i + 1}/${PAIRS} (${pair.first} first): plain ${pair.plainS.toFixed(1)} s, watched ${pair.watchS.toFixed(1)} s, ratio ${pair.ratio.toFixed(3)}; watch's own time per rank ${ownS.map((o) => o.toFixed(2)).join(', ')} s, the largest ${pair.ownPct.toFixed(2)}% of the rest`);
    pairs.push(pair);
  }
  const medianRatio = median(pairs.map((p) => p.ratio));
  const medianOwnPct = median(pairs.map((p) => p.ownPct));
  const diagnostics = [1, 2].map((world) => {
    const plain = once(world, 'plain');
    const diag = once(world, 'diag');
    const insideS = diag.diag_s ?? [];
    const row = { world, plainS: plain.wall_s, diagS: diag.wall_s, msPerStep: ((diag.wall_s - plain.wall_s) * 1000) / DDP_STEPS, insideS, insideMsPerStep: (Math.max(...insideS) * 1000) / DDP_STEPS };
    console.log(`  diagnostics, ${world} rank(s): plain ${row.plainS.toFixed(1)} s, every 10 steps ${row.diagS.toFixed(1)} s: ${row.msPerStep.toFixed(1)} ms/step per rank by difference; inside the diagnostics ${insideS.map((x) => x.toFixed(2)).join(', ')} s: ${row.insideMsPerStep.toFixed(1)} ms/step on the slower rank`);
    return row;
  });
  return {
    steps: DDP_STEPS, overhead: { pairs, medianRatio, overheadPct: (medianRatio - 1) * 100, medianOwnPct }, diagnostics,
    perRankRatio: diagnostics[1].msPerStep / diagnostics[0].msPerStep, perRankInsideRatio: diagnostics[1].insideMsPerStep / diagnostics[0].insideMsPerStep,
  };
}

/** (b): DynMuon matmul against torch.optim.Muon fp32 in one process. */
function optimStep(device: 'cpu' | 'cuda'): OptimResult {
  return JSON.parse(python([join(__dirname, 'torch_dynmuon_bench.py'), JSON.stringify(SIZES), String(REPEATS), device]).trim());
}

function main(): void {
  const probe = JSON.parse(python(['-c', 'import json, torch; print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))']));
  const meta = {
    date: new Date().toISOString(), revision: revision(), cpu: cpus()[0]?.model, cores: cpus().length, node: process.version,
    torch: probe.torch as string, torchThreads: probe.threads as number, cuda: probe.cuda as string | null,
    loadStart: +loadavg()[0].toFixed(2), loadEnd: 0, smoke: SMOKE, pairs: PAIRS, repeats: REPEATS, steps: STEPS,
  };
  console.log(`torch ${meta.torch} (${meta.torchThreads} threads), ${meta.cores} × ${meta.cpu}, CUDA: ${meta.cuda ?? 'none'}, load ${meta.loadStart}${SMOKE ? ' — SMOKE: tiny sizes, figures mean nothing' : ''}`);

  const devices: Array<'cpu' | 'cuda'> = meta.cuda ? ['cpu', 'cuda'] : ['cpu'];
  const watch: Record<string, WatchOverhead | null> = { cpu: null, cuda: null };
  const optim: Record<string, OptimResult | null> = { cpu: null, cuda: null };
  for (const device of devices) {
    console.log(`(a) watch overhead, ${device}: examples/torch/train.py, ${STEPS} steps, ${PAIRS} pair(s)`);
    watch[device] = watchOverhead(device);
    console.log(`(b) optimizer step, ${device}: ${SIZES.map(([m, n]) => `${m}×${n}`).join(', ')}, median of ${REPEATS}`);
    optim[device] = optimStep(device);
  }
  console.log(`(d) data parallel, cpu (gloo, 1 thread per rank): ${DDP_STEPS} steps, ${PAIRS} pair(s)`);
  const ddp = dataParallel();
  meta.loadEnd = +loadavg()[0].toFixed(2);

  console.log('\n| measurement | device | watched / DynMuon | plain / Muon fp32 | ratio |');
  console.log('|---|---|---|---|---|');
  for (const device of ['cpu', 'cuda'] as const) {
    const w = watch[device];
    if (w) {
      console.log(`| watch overhead, ${w.steps} steps (median of ${w.pairs.length} pairs) | ${device} | ${median(w.pairs.map((p) => p.watchS)).toFixed(1)} s | ${median(w.pairs.map((p) => p.plainS)).toFixed(1)} s | ${w.medianRatio.toFixed(3)} (${w.overheadPct >= 0 ? '+' : ''}${w.overheadPct.toFixed(1)}%) |`);
      console.log(`| watch's own time over the rest of the run (median of ${w.pairs.length}) | ${device} | ${median(w.pairs.map((p) => p.ownS)).toFixed(2)} s | | ${w.medianOwnPct.toFixed(2)}% |`);
    } else console.log(`| watch overhead | ${device} | not measured (torch sees no CUDA device) | | |`);
    const o = optim[device];
    if (o) for (const r of o.results) console.log(`| optimizer step ${r.m}×${r.n} (median of ${r.repeats}) | ${device} | ${r.dynmuon_matmul_ms.toFixed(2)} ms | ${r.muon_fp32_ms.toFixed(2)} ms | ${r.ratio.toFixed(2)} |`);
    else console.log(`| optimizer step | ${device} | not measured (torch sees no CUDA device) | | |`);
  }
  console.log(`| watch overhead, 2-rank DDP, ${ddp.steps} steps (median of ${ddp.overhead.pairs.length}) | cpu | ${median(ddp.overhead.pairs.map((p) => p.watchS)).toFixed(1)} s | ${median(ddp.overhead.pairs.map((p) => p.plainS)).toFixed(1)} s | ${ddp.overhead.medianRatio.toFixed(3)} (${ddp.overhead.overheadPct >= 0 ? '+' : ''}${ddp.overhead.overheadPct.toFixed(1)}%) |`);
  console.log(`| watch's own time, 2-rank DDP, the slower rank (median of ${ddp.overhead.pairs.length}) | cpu | | | ${ddp.overhead.medianOwnPct.toFixed(2)}% |`);
  console.log(`| diagnostics per rank, 2 ranks vs 1, wall difference (every 10 steps) | cpu | ${ddp.diagnostics[1].msPerStep.toFixed(1)} ms/step | ${ddp.diagnostics[0].msPerStep.toFixed(1)} ms/step | ${ddp.perRankRatio.toFixed(2)} |`);
  console.log(`| diagnostics per rank, 2 ranks vs 1, time inside them (slower rank) | cpu | ${ddp.diagnostics[1].insideMsPerStep.toFixed(1)} ms/step | ${ddp.diagnostics[0].insideMsPerStep.toFixed(1)} ms/step | ${ddp.perRankInsideRatio.toFixed(2)} |`);
  console.log(`load average ${meta.loadStart} at start, ${meta.loadEnd} at end`);

  const data = { meta, watchOverhead: watch, optimizerStep: optim, dataParallel: ddp };
  let file: string;
  if (SMOKE) {
    file = join(mkdtempSync(join(tmpdir(), 'muonscope-torch-bench-smoke-')), 'torch.smoke.json');
  } else {
    mkdirSync(RESULTS, { recursive: true });
    file = join(RESULTS, 'torch.json');
  }
  writeFileSync(file, JSON.stringify(data, null, 1) + '\n');
  console.log(`wrote ${file}`);
}

main();

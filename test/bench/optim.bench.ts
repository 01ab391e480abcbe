// `npm run bench:optim`: one optimizer step per matrix size, for Muon and each DynMuon mode/method,
// against torch.optim.Muon timed in the same run (fp32 Newton–Schulz and its unmodified bfloat16 one).
// Prints a table and writes test/bench/results/optim.json. A benchmark, not a test: nothing asserts.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { selectTfBackend } from '../../trainer/backend/tfjs-backend.js';
import { loadKernels, type MatrixKernels } from '../../trainer/kernels/index.js';
import { shapeExact } from '../../trainer/linalg/shaping.js';
import { DynMuon, type DynMuonOptions } from '../../trainer/optim/dynmuon.js';
import { Muon } from '../../trainer/optim/muon.js';
import { randomMatrix } from '../helpers/random.js';

const QUICK = process.argv.includes('--quick');
const SIZES: [number, number][] = QUICK ? [[256, 256], [512, 512]] : [[256, 256], [512, 512], [1024, 1024], [1024, 4096]];
/** Stop repeating a case once it has run this long (the slow fallbacks take seconds per step). */
const TIME_BUDGET_MS = QUICK ? 1500 : 6000;
const P = -0.25;

interface Row {
  optimizer: 'muon' | 'dynmuon';
  mode: string | null;
  method: string;
  m: number;
  n: number;
  backend: string;
  kernels: string;
  ms_per_step: number;
  torch_fp32_ms: number | null;
  torch_bf16_ms: number | null;
  ratio_fp32: number | null;
  ratio_bf16: number | null;
  rel_error_vs_exact: number;
}

interface Case {
  optimizer: 'muon' | 'dynmuon';
  mode: string | null;
  method: string;
  kernels: MatrixKernels;
  make: (v: tf.Variable, kernels: MatrixKernels) => { step(g: Record<string, tf.Tensor>): Promise<void> };
}

function torchTimes(sizes: [number, number][], variants: 'both' | 'fp32' = 'both'): Map<string, { fp32: number; bf16: number | null }> | null {
  try {
    const out = execFileSync('python3', [join(__dirname, 'torch_muon.py'), JSON.stringify(sizes), '5', variants], { encoding: 'utf8', timeout: 1_800_000 });
    const parsed = JSON.parse(out) as { results: { m: number; n: number; fp32_ms: number; bf16_ms: number | null }[] };
    return new Map(parsed.results.map((r) => [`${r.m}x${r.n}`, { fp32: r.fp32_ms, bf16: r.bf16_ms }]));
  } catch (e) {
    console.warn(`torch reference unavailable (${String((e as Error).message).split('\n')[0]}); torch columns are null`);
    return null;
  }
}

function unitDirection(x: ArrayLike<number>): Float64Array {
  let n = 0;
  for (let i = 0; i < x.length; i++) n += x[i] * x[i];
  const s = 1 / Math.sqrt(n);
  return Float64Array.from(x, (v) => v * s);
}

function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const [ua, ub] = [unitDirection(a), unitDirection(b)];
  let d = 0;
  for (let i = 0; i < ua.length; i++) d += (ua[i] - ub[i]) ** 2;
  return Math.sqrt(d);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function measure(c: Case, rows: number, cols: number, p: number): Promise<{ ms: number; err: number }> {
  const w0 = randomMatrix(rows, cols, 1, 0.02);
  const g = tf.tensor2d(randomMatrix(rows, cols, 2), [rows, cols]);
  const v = tf.variable(tf.tensor2d(w0, [rows, cols]), true, 'w');
  const opt = c.make(v, c.kernels);
  // First step from zero momentum: the shaped input is a multiple of G, and with no weight decay the
  // step is −lr·scale·D, so D's direction can be compared with exact shaping of G.
  await opt.step({ w: g });
  const w1 = (await v.data()) as Float32Array;
  const err = relError(Float64Array.from(w0, (x, i) => x - w1[i]), shapeExact(await g.data() as Float32Array, rows, cols, p, 1e-3));
  const times: number[] = [];
  const started = performance.now();
  while (times.length < 3 || (performance.now() - started < TIME_BUDGET_MS && times.length < 20)) {
    const t0 = performance.now();
    await opt.step({ w: g });
    times.push(performance.now() - t0);
  }
  tf.dispose([g, v]);
  return { ms: median(times), err };
}

/** Best of two runs of the torch reference (before and after ours), per size: the conservative baseline. */
function bestOf(a: ReturnType<typeof torchTimes>, b: ReturnType<typeof torchTimes>): ReturnType<typeof torchTimes> {
  if (!a || !b) return a ?? b;
  return new Map([...a].map(([k, v]) => [k, { fp32: Math.min(v.fp32, b.get(k)!.fp32), bf16: v.bf16 ?? b.get(k)!.bf16 }]));
}

async function main() {
  // torch first, before onnxruntime's thread pool exists in this process.
  console.log(`measuring torch.optim.Muon on ${SIZES.length} sizes...`);
  const torchBefore = torchTimes(SIZES);
  const backend = await selectTfBackend('auto');
  const native = (await loadKernels('onnxruntime-cpu')).kernels;
  const fallback = (await loadKernels('tfjs')).kernels;
  const dyn = (mode: DynMuonOptions['mode'], method: DynMuonOptions['method']) => (v: tf.Variable, k: MatrixKernels) =>
    new DynMuon([v], { mode, method, lr: 0.02, weightDecay: 0, totalSteps: 1000, schedule: { type: 'constant', p: P } }, k);
  const cases: Case[] = [
    { optimizer: 'muon', mode: null, method: 'ns', kernels: native, make: (v, k) => new Muon([v], { lr: 0.02, weightDecay: 0 }, k) },
    { optimizer: 'muon', mode: null, method: 'ns', kernels: fallback, make: (v, k) => new Muon([v], { lr: 0.02, weightDecay: 0 }, k) },
    { optimizer: 'dynmuon', mode: 'exact', method: 'auto', kernels: native, make: dyn('exact', 'auto') },
    { optimizer: 'dynmuon', mode: 'exact', method: 'matmul', kernels: native, make: dyn('exact', 'matmul') },
    { optimizer: 'dynmuon', mode: 'exact', method: 'exact', kernels: native, make: dyn('exact', 'exact') },
    { optimizer: 'dynmuon', mode: 'released', method: 'taylor', kernels: native, make: dyn('released', 'auto') },
    { optimizer: 'dynmuon', mode: 'lrOnly', method: 'ns', kernels: native, make: dyn('lrOnly', 'auto') },
  ];
  const measured: { c: Case; m: number; n: number; ms: number; err: number }[] = [];
  for (const [m, n] of SIZES) {
    for (const c of cases) {
      const p = c.optimizer === 'muon' || c.mode === 'lrOnly' ? 0 : P;
      measured.push({ c, m, n, ...(await measure(c, m, n, p)) });
      console.log(`  ${m}x${n} ${c.optimizer}${c.mode ? `/${c.mode}` : ''} ${c.method} ${c.kernels.provider}: ${measured.at(-1)!.ms.toFixed(1)} ms`);
    }
  }
  await native.dispose();
  // fp32 again (cheap); bfloat16 once is enough: it is slower than everything here by a wide margin.
  console.log('measuring torch.optim.Muon (fp32) again...');
  const torch = bestOf(torchBefore, torchTimes(SIZES, 'fp32'));
  const rows: Row[] = [];
  {
    for (const { c, m, n, ms, err } of measured) {
      const t = torch?.get(`${m}x${n}`) ?? null;
      const row: Row = {
        optimizer: c.optimizer,
        mode: c.mode,
        method: c.method,
        m,
        n,
        backend: backend.chosen,
        kernels: c.kernels.provider,
        ms_per_step: +ms.toFixed(2),
        torch_fp32_ms: t ? +t.fp32.toFixed(2) : null,
        torch_bf16_ms: t?.bf16 ? +t.bf16.toFixed(2) : null,
        ratio_fp32: t ? +(ms / t.fp32).toFixed(3) : null,
        ratio_bf16: t?.bf16 ? +(ms / t.bf16).toFixed(3) : null,
        rel_error_vs_exact: +err.toExponential(3),
      };
      rows.push(row);
      console.log(
        [`${m}x${n}`.padEnd(10), `${c.optimizer}${c.mode ? `/${c.mode}` : ''}`.padEnd(17), c.method.padEnd(7), c.kernels.provider.padEnd(16),
          `${row.ms_per_step.toFixed(1)} ms`.padStart(11), `torch fp32 ${row.torch_fp32_ms ?? '-'} ms`.padEnd(22),
          `ratio ${row.ratio_fp32 ?? '-'}`.padEnd(13), `bf16 ratio ${row.ratio_bf16 ?? '-'}`.padEnd(18), `err ${row.rel_error_vs_exact}`].join(' '),
      );
    }
  }
  const dir = join(__dirname, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, QUICK ? 'optim.quick.json' : 'optim.json');
  const meta = { date: new Date().toISOString(), cpu: cpus()[0]?.model, cores: cpus().length, node: process.version, p_for_dynmuon: P };
  writeFileSync(file, JSON.stringify({ meta, rows }, null, 1) + '\n');
  console.log(`wrote ${file}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});

// `npm run bench:trainer`: training throughput of the default models with each optimizer, the cost of
// diagnostics at the default cadence, and PyTorch CPU on the same transformer in the same run.
// Prints a table and writes test/bench/results/trainer.json. A benchmark, not a test.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { readRunLog } from '../../common/run-folder/log.js';
import { validateRunConfig, type RunConfig } from '../../trainer/run/config.js';
import { startSession } from '../../trainer/run/session.js';

const QUICK = process.argv.includes('--quick');

interface Row {
  model: string;
  optimizer: string;
  backend: string;
  steps_per_s: number;
  tokens_per_s: number;
  diagnostics_overhead_pct: number | null;
  torch_tokens_per_s: number | null;
  ratio: number | null;
}

function config(raw: Record<string, unknown>): RunConfig {
  const r = validateRunConfig(raw);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.config;
}

const NO_DIAGNOSTICS = { every: 1_000_000, curvature: false, noise: false };

/** Wall time per step over a run, excluding the first steps (session start, first compilations). */
async function timeRun(c: RunConfig, warmup: number): Promise<{ msPerStep: number; tokensPerStep: number; backend: string }> {
  const session = await startSession({ config: c, configDir: process.cwd(), runsRoot: mkdtempSync(join(tmpdir(), 'muonscope-bench-')) });
  await session.done;
  const records = readRunLog(session.paths.log).records;
  const steps = records.filter((r) => r.kind === 'step');
  // t is the time each step record was written; the span between them includes diagnostics and evals.
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

async function main() {
  const steps = QUICK ? 30 : 150;
  const warmup = 5;
  const transformer = { width: 128, layers: 2, heads: 4, contextLength: 64 };
  const batchSize = 16;
  const workloads = [
    { label: 'transformer 128×2 (Markov)', base: { model: { type: 'transformer', ...transformer }, task: { type: 'markov' }, batchSize } },
    { label: 'MLP 64→256→256→16 (teacher–student)', base: { model: { type: 'mlp', hiddenDims: [256, 256] }, task: { type: 'teacherStudent' }, batchSize: 256 } },
  ];
  const optimizers = [{ type: 'dynmuon' }, { type: 'muon' }, { type: 'adamw' }];
  const torch = torchTokensPerSecond({ vocabSize: 32, mlpRatio: 4, batchSize, ...transformer });
  const rows: Row[] = [];
  for (const w of workloads) {
    for (const o of optimizers) {
      const common = { name: 'bench', steps, evalEvery: 1_000_000, checkpointEvery: 1_000_000, optimizer: o, ...w.base };
      const plain = await timeRun(config({ ...common, diagnostics: NO_DIAGNOSTICS }), warmup);
      // Diagnostics overhead only for the matrix optimizers (AdamW runs have no matrix layers to probe).
      const withDiagnostics = o.type === 'adamw' ? null : await timeRun(config(common), warmup);
      const isTransformer = w.label.startsWith('transformer');
      const tokensPerS = (plain.tokensPerStep * 1000) / plain.msPerStep;
      const row: Row = {
        model: w.label,
        optimizer: o.type,
        backend: plain.backend,
        steps_per_s: +(1000 / plain.msPerStep).toFixed(2),
        tokens_per_s: Math.round(tokensPerS),
        diagnostics_overhead_pct: withDiagnostics ? +((100 * (withDiagnostics.msPerStep - plain.msPerStep)) / plain.msPerStep).toFixed(1) : null,
        torch_tokens_per_s: isTransformer && torch ? Math.round(torch) : null,
        ratio: isTransformer && torch ? +(torch / tokensPerS).toFixed(2) : null,
      };
      rows.push(row);
      console.log(
        [row.model.padEnd(38), row.optimizer.padEnd(8), row.backend.padEnd(5), `${row.steps_per_s} steps/s`.padEnd(15), `${row.tokens_per_s} tok/s`.padEnd(14),
          `diag +${row.diagnostics_overhead_pct ?? '-'}%`.padEnd(13), `torch ${row.torch_tokens_per_s ?? '-'} tok/s`.padEnd(18), `torch/ours ${row.ratio ?? '-'}`].join(' '),
      );
    }
  }
  const dir = join(__dirname, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, QUICK ? 'trainer.quick.json' : 'trainer.json');
  writeFileSync(file, JSON.stringify({ meta: { date: new Date().toISOString(), cpu: cpus()[0]?.model, cores: cpus().length, node: process.version, steps, batchSize }, rows }, null, 1) + '\n');
  console.log(`wrote ${file}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});

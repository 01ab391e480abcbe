// The evidence harness's pure parts (docs/algorithms.md §7): adaptive lr tuning, the resumable results
// file's keys and revision check, the rows' paired ratios against two references, the race tallies and
// the report's goal lines. No training: every input is a hand-made curve whose answer is worked out here.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { analyse, confidenceBin, fixTarget, lossAt, raceStats, targetCurve, type Row } from '../bench/advisor/analysis.js';
import type { JobResult, JobSpec } from '../bench/advisor/job.js';
import { selectOptimizers, SIZES, TASKS, taskAtSize, type TaskSpec } from '../bench/advisor/plan.js';
import { goalLines, racesOf, verdict } from '../bench/advisor/report.js';
import { bootstrapMedianCi } from '../bench/advisor/stats.js';
import { codeHash, configHash, foreignRevisions, jobKey, parseStore, ResultStore, revisionLabel } from '../bench/advisor/store.js';
import { tailLoss, tuneAdaptive, tuneStep } from '../bench/advisor/tune.js';

/** A bowl in log2(lr) with its minimum at `opt`: the tuning loss of a well-behaved lr sweep. */
const bowl = (opt: number) => (lrs: number[]) => lrs.map((lr) => Math.log2(lr / opt) ** 2);

describe('adaptive lr tuning', () => {
  const grid = [0.0025, 0.005, 0.01, 0.02, 0.04];

  it('keeps an interior optimum without extending', async () => {
    const r = await tuneAdaptive(grid, 3, bowl(0.01));
    assert.deepEqual(r, { lr: 0.01, atGridEdge: false, grid, extensions: 0 });
  });

  it('extends below the lowest lr, one ×2 step at a time, until the best is interior', async () => {
    // Optimum two steps below the grid: 0.00125 then 0.000625 are added; 0.000625 is best with 0.00125
    // above it, so a third extension (0.0003125) is needed to put it in the interior.
    const r = await tuneAdaptive(grid, 3, bowl(0.000625));
    assert.deepEqual(r.grid, [0.0003125, 0.000625, 0.00125, ...grid]);
    assert.equal(r.lr, 0.000625);
    assert.equal(r.extensions, 3);
    assert.equal(r.atGridEdge, false);
  });

  it('extends above the highest lr', async () => {
    const r = await tuneAdaptive(grid, 3, bowl(0.08));
    assert.deepEqual(r.grid, [...grid, 0.08, 0.16]);
    assert.deepEqual([r.lr, r.extensions, r.atGridEdge], [0.08, 2, false]);
  });

  it('flags the grid edge only when the bound was hit', async () => {
    const r = await tuneAdaptive(grid, 3, bowl(0.0025 / 64));
    assert.deepEqual(r.grid, [0.0003125, 0.000625, 0.00125, ...grid]);
    assert.deepEqual([r.lr, r.extensions, r.atGridEdge], [0.0003125, 3, true]);
    const none = await tuneAdaptive(grid, 0, bowl(1));
    assert.deepEqual([none.lr, none.extensions, none.atGridEdge], [0.04, 0, true]);
  });

  it('follows the grid’s own spacing at each end (a ×3 grid extends by ×3)', () => {
    const scores = new Map([
      [1e-3, 1],
      [3e-3, 2],
      [9e-3, 3],
    ]);
    assert.deepEqual(tuneStep([1e-3, 3e-3, 9e-3], scores, 0, 3), { kind: 'extend', lr: 0.000333333 });
  });

  it('extends downward when every run failed, and prefers the smaller lr on a tie', () => {
    const failed = new Map([
      [0.01, Infinity],
      [0.02, Infinity],
    ]);
    assert.deepEqual(tuneStep([0.01, 0.02], failed, 0, 3), { kind: 'extend', lr: 0.005 });
    const tie = new Map([
      [0.01, 2],
      [0.02, 1],
      [0.04, 1],
    ]);
    assert.deepEqual(tuneStep([0.01, 0.02, 0.04], tie, 0, 3), { kind: 'done', lr: 0.02, atGridEdge: false });
  });

  it('a one-point grid extends upward (its run finished) or downward (it failed)', () => {
    assert.deepEqual(tuneStep([0.01], new Map([[0.01, 1]]), 0, 3), { kind: 'extend', lr: 0.02 });
    assert.deepEqual(tuneStep([0.01], new Map([[0.01, NaN]]), 0, 3), { kind: 'extend', lr: 0.005 });
  });

  it('refuses a grid it cannot read', () => {
    assert.throws(() => tuneStep([], new Map(), 0, 3), /empty grid/);
    assert.throws(() => tuneStep([0.01, 0.01], new Map([[0.01, 1]]), 0, 3), /repeated lr 0.01/);
    assert.throws(() => tuneStep([0.01, 0.02], new Map([[0.01, 1]]), 0, 3), /no score for lr 0.02/);
  });

  it('scores a run by its last three evaluations; a failed or empty run by Infinity', () => {
    const evals: [number, number][] = [
      [10, 9],
      [20, 3],
      [30, 2],
      [40, 1],
    ];
    assert.equal(tailLoss({ evals }), 2);
    assert.equal(tailLoss({ evals, failure: 'diverged' }), Infinity);
    assert.equal(tailLoss({ evals: [] }), Infinity);
    assert.equal(tailLoss({ evals: [[10, NaN]] }), Infinity);
  });
});

describe('the plan', () => {
  it('starting grids are ×2 spaced and the default set is what the issue needs', () => {
    for (const t of TASKS) {
      for (const g of [t.grid.muon, t.grid.adamw]) for (let i = 1; i < g.length; i++) assert.ok(Math.abs(g[i] / g[i - 1] - 2) < 1e-9, `${t.name}: ${g}`);
    }
    assert.deepEqual(
      selectOptimizers(undefined).map((o) => o.name),
      ['adamw', 'muon', 'exact', 'advisor'],
    );
    assert.equal(selectOptimizers('all').length, 8);
    assert.throws(() => selectOptimizers('some'), /--variants some: expected core or all/);
  });

  it('the advisor variant applies every suggestion (autoMinConfidence 0)', () => {
    const advisor = selectOptimizers('core').find((o) => o.name === 'advisor')!.config(0.01).advisor as { mode: string; autoMinConfidence: number };
    assert.deepEqual([advisor.mode, advisor.autoMinConfidence], ['auto', 0]);
  });

  it('the smoke size shortens the task and trims its grid; the full size keeps them', () => {
    const t = taskAtSize(TASKS[0], SIZES.smoke);
    assert.deepEqual([t.steps, t.evalEvery, t.grid.muon, t.grid.adamw], [60, 10, TASKS[0].grid.muon.slice(0, 2), TASKS[0].grid.adamw.slice(0, 2)]);
    assert.deepEqual(taskAtSize(TASKS[0], SIZES.full), TASKS[0]);
    assert.equal(SIZES.full.evalSeeds.length >= 10, true);
  });
});

describe('the resumable results file', () => {
  const spec: JobSpec = { task: 'ts-smooth', optimizer: 'muon', lr: 0.01, seed: 1, steps: 400, evalEvery: 10 };
  const result = (s: JobSpec): JobResult => ({ ...s, evals: [[10, 1]], lossFloor: 0.0025, suggestions: 0, applied: [], wallMs: 5 });

  it('keys a job by every part of its spec, its config and the revision', () => {
    const key = jobKey(spec, { a: 1 }, 'abc');
    assert.equal(key, `ts-smooth|muon|lr=0.01|seed=1|steps=400|every=10|config=${configHash({ a: 1 })}|rev=abc`);
    const variants = [
      jobKey({ ...spec, lr: 0.02 }, { a: 1 }, 'abc'),
      jobKey({ ...spec, seed: 2 }, { a: 1 }, 'abc'),
      jobKey({ ...spec, steps: 60 }, { a: 1 }, 'abc'),
      jobKey({ ...spec, optimizer: 'exact' }, { a: 1 }, 'abc'),
      jobKey(spec, { a: 2 }, 'abc'),
      jobKey(spec, { a: 1 }, 'abd'),
    ];
    assert.equal(new Set([key, ...variants]).size, 7);
  });

  it('hashes a config independently of key order, not of values', () => {
    assert.equal(configHash({ a: 1, b: { c: [1, 2], d: 'x' } }), configHash({ b: { d: 'x', c: [1, 2] }, a: 1 }));
    assert.notEqual(configHash({ a: [1, 2] }), configHash({ a: [2, 1] }));
    assert.match(configHash({}), /^[0-9a-f]{12}$/);
  });

  it('labels a revision by commit, dirty flag and code hash; the code hash is order-free and content-bound', () => {
    assert.equal(revisionLabel({ commit: 'c0ffee', dirty: false, code: '0123456789ab' }), 'c0ffee (code 0123456789ab)');
    assert.equal(revisionLabel({ commit: 'c0ffee', dirty: true, code: '0123456789ab' }), 'c0ffee+dirty (code 0123456789ab)');
    const files: [string, string][] = [
      ['trainer/a.ts', 'x'],
      ['common/b.ts', 'y'],
    ];
    assert.equal(codeHash(files), codeHash([...files].reverse()));
    assert.notEqual(codeHash(files), codeHash([['trainer/a.ts', 'x2'], files[1]]));
    // Moving content between files is a change too.
    assert.notEqual(codeHash(files), codeHash([['trainer/a.ts', 'y'], ['common/b.ts', 'x']]));
    assert.match(codeHash([]), /^[0-9a-f]{12}$/);
  });

  it('drops a last line cut short; any other bad line is an error naming it', () => {
    const good = JSON.stringify({ key: 'k', revision: 'r', result: result(spec) });
    assert.deepEqual(parseStore(`${good}\n{"key":"k2","rev`, 'f'), { jobs: [JSON.parse(good)], droppedTail: true });
    assert.throws(() => parseStore(`${good}\nnot json\n${good}\n`, 'f'), /^Error: f:2: not a stored job/);
    assert.throws(() => parseStore(`{"key":"k"}\n${good}\n`, 'f'), /f:1: not a stored job \(missing key, revision or result\)/);
    assert.deepEqual(foreignRevisions([JSON.parse(good), { ...JSON.parse(good), revision: 's' }], 'r'), ['s']);
  });

  it('resumes a run of the same revision, refuses another revision, and never starts over unasked', () => {
    const dir = mkdtempSync(join(tmpdir(), 'advisor-bench-'));
    try {
      const file = join(dir, 'jobs.jsonl');
      const a = ResultStore.open(file, 'rev1', { resume: false, fresh: false }, 'c1');
      a.put('k1', result(spec));
      a.put('k2', result({ ...spec, seed: 2 }));
      assert.throws(() => ResultStore.open(file, 'rev1', { resume: false, fresh: false }), /already holds finished jobs: pass --resume/);
      assert.throws(() => ResultStore.open(file, 'rev2', { resume: true, fresh: false }), /holds jobs run at code rev1 \(c1\); this checkout's code is rev2/);
      // The refusals changed nothing on disk.
      assert.equal(readFileSync(file, 'utf8').trim().split('\n').length, 2);
      const b = ResultStore.open(file, 'rev1', { resume: true, fresh: false });
      assert.equal(b.size, 2);
      assert.deepEqual(b.get('k2'), result({ ...spec, seed: 2 }));
      assert.equal(b.get('k3'), undefined);
      // A kill mid-write leaves a cut line: resume drops it and appends cleanly after.
      writeFileSync(file, readFileSync(file, 'utf8') + '{"key":"k3","revis');
      const c = ResultStore.open(file, 'rev1', { resume: true, fresh: false });
      c.put('k3', result({ ...spec, seed: 3 }));
      assert.equal(ResultStore.open(file, 'rev1', { resume: true, fresh: false }).size, 3);
      assert.equal(ResultStore.open(file, 'rev2', { resume: false, fresh: true }).size, 0);
      assert.equal(readFileSync(file, 'utf8'), '');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('one harness per file: a live owner’s lock refuses, a dead owner’s is taken over', () => {
    const dir = mkdtempSync(join(tmpdir(), 'advisor-bench-'));
    try {
      const file = join(dir, 'jobs.jsonl');
      // The parent process (the test runner) is alive and is not this process.
      writeFileSync(`${file}.lock`, `${process.ppid}\n`);
      assert.throws(() => ResultStore.open(file, 'rev1', { resume: false, fresh: true }), new RegExp(`in use by another harness \\(pid ${process.ppid}\\)`));
      assert.equal(existsSync(file), false);
      // Above Linux's largest pid: no such process.
      writeFileSync(`${file}.lock`, '4194305\n');
      const s = ResultStore.open(file, 'rev1', { resume: false, fresh: true });
      assert.equal(readFileSync(`${file}.lock`, 'utf8'), `${process.pid}\n`);
      s.close();
      assert.equal(existsSync(`${file}.lock`), false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('rows: paired ratios against tuned Muon and DynMuon default', () => {
  const task: TaskSpec = { ...TASKS[0], steps: 400, target: { muonAt: 0.5 } };
  /** A curve that crosses loss 1 exactly at step `at` (linear from 2 at step 0), flat at 0.5 after; null: never below 1.5. */
  const curve = (at: number | null): [number, number][] => {
    const out: [number, number][] = [];
    for (let s = 0; s <= 400; s += 10) out.push([s, at === null ? 1.5 : Math.max(0.5, 2 - s / at)]);
    return out;
  };
  const run = (optimizer: string, seed: number, at: number | null, failure?: string): JobResult => ({
    task: task.name,
    optimizer,
    lr: 0.01,
    seed,
    steps: 400,
    evalEvery: 10,
    evals: curve(at),
    lossFloor: null,
    suggestions: 0,
    applied: [],
    wallMs: 1,
    ...(failure ? { failure } : {}),
  });
  const seeds = [1, 2, 3, 4, 5];
  const muonAt = [100, 120, 140, 160, 200];
  const exactAt = [100, 100, 100, 100, 100];
  const advisorAt: (number | null)[] = [50, 60, 70, 80, null];
  const runs = [...seeds.map((s, i) => run('muon', s, muonAt[i])), ...seeds.map((s, i) => run('exact', s, exactAt[i])), ...seeds.map((s, i) => run('advisor', s, advisorAt[i]))];
  const optimizers = [
    { name: 'muon', label: 'Muon' },
    { name: 'exact', label: 'default' },
    { name: 'advisor', label: 'advisor' },
  ];
  const tuned = { muon: { lr: 0.01, atGridEdge: false, extensions: 0 }, exact: { lr: 0.02, atGridEdge: true, extensions: 3 }, advisor: { lr: 0.01, atGridEdge: false, extensions: 1 } };
  const rows = analyse(task, 1, runs, seeds, optimizers, tuned, { muon: 'muon', dynmuonDefault: 'exact' });
  const row = (name: string) => rows.find((r) => r.optimizer === name)!;

  it('ratios per seed: the never-reached run counts as the budget', () => {
    // advisor/muon: 0.5, 0.5, 0.5, 0.5, 400/200 = 2 → median 0.5; advisor/exact: 0.5, 0.6, 0.7, 0.8, 4 → median 0.7.
    const a = row('advisor');
    assert.equal(a.ratio_vs_muon, 0.5);
    assert.ok(Math.abs(a.ratio_vs_dynmuon_default - 0.7) < 1e-12);
    assert.deepEqual([a.n_seeds, a.n_reached, a.steps_to_target_median], [5, 4, 70]);
    // muon/exact: 1, 1.2, 1.4, 1.6, 2 → 1.4; exact/muon: 1, 1/1.2, 1/1.4, 1/1.6, 0.5 → 1/1.4.
    assert.ok(Math.abs(row('muon').ratio_vs_dynmuon_default - 1.4) < 1e-12);
    assert.ok(Math.abs(row('exact').ratio_vs_muon - 1 / 1.4) < 1e-12);
    assert.deepEqual([row('muon').ratio_vs_muon, row('muon').ratio_vs_muon_ci_low, row('muon').ratio_vs_muon_ci_high], [1, 1, 1]);
  });

  it('each ratio carries the seeded bootstrap CI of its own paired ratios', () => {
    const ci = bootstrapMedianCi([0.5, 0.6, 0.7, 0.8, 4]);
    const a = row('advisor');
    assert.deepEqual([a.ratio_vs_dynmuon_default_ci_low, a.ratio_vs_dynmuon_default_ci_high], [ci.low, ci.high]);
    assert.ok(ci.low <= 0.7 && 0.7 <= ci.high && ci.low >= 0.5 && ci.high <= 4);
  });

  it('carries the tuning outcome: lr, grid edge, extensions', () => {
    assert.deepEqual([row('exact').lr, row('exact').lr_at_grid_edge, row('exact').grid_extensions], [0.02, true, 3]);
    assert.deepEqual([row('advisor').lr_at_grid_edge, row('advisor').grid_extensions], [false, 1]);
  });

  it('a failed run never reaches the target; a missing run is an error', () => {
    const failed = analyse(task, 1, [...runs.filter((r) => !(r.optimizer === 'muon' && r.seed === 1)), run('muon', 1, 100, 'diverged')], seeds, optimizers, tuned, { muon: 'muon', dynmuonDefault: 'exact' });
    assert.equal(failed.find((r) => r.optimizer === 'muon')!.n_reached, 4);
    assert.throws(() => analyse(task, 1, runs.slice(1), seeds, optimizers, tuned, { muon: 'muon', dynmuonDefault: 'exact' }), /no evaluation run of muon on seed 1/);
  });

  it('without the default schedule in the set, its ratios are NaN, not invented', () => {
    const r = analyse(task, 1, runs, seeds, optimizers.filter((o) => o.name !== 'exact'), tuned, { muon: 'muon', dynmuonDefault: 'exact' });
    assert.ok(Number.isNaN(r[1].ratio_vs_dynmuon_default));
  });

  it('the target is tuned Muon’s median loss at the budget fraction, on the tuning runs only', () => {
    // At step 200: seed 1 crosses 1 at 100 → max(0.5, 2 − 2) = 0.5; seed 2 at 300 → 2 − 200/300 = 4/3; seed 3 at 400 → 1.5. Median 4/3.
    const tuning = [run('muon', 1, 100), run('muon', 2, 300), run('muon', 3, 400), { ...run('muon', 4, 10), lr: 0.02 }];
    const t = fixTarget(task, tuning, 0.01);
    assert.ok(Math.abs(t.target - 4 / 3) < 1e-12);
    assert.match(t.targetRule, /tuned Muon at step 200 \(50% of the budget\)/);
    assert.throws(() => fixTarget(task, tuning, 0.04), /no finished tuning run of Muon at its tuned lr 0.04/);
    assert.equal(lossAt([[0, 2], [10, 1]], 5), 1.5);
  });
});

describe('targets over each seed’s own floor (the Markov task)', () => {
  const task: TaskSpec = { ...TASKS[0], steps: 100, target: { muonAt: 0.5, overFloor: true } };
  const run = (seed: number, floor: number, excess: number[]): JobResult => ({
    task: task.name,
    optimizer: 'muon',
    lr: 0.01,
    seed,
    steps: 100,
    evalEvery: 50,
    evals: excess.map((e, i) => [i * 50, floor + e] as [number, number]),
    lossFloor: floor,
    suggestions: 0,
    applied: [],
    wallMs: 1,
  });

  it('reads the excess over the run’s floor, so seeds with different floors compare alike', () => {
    assert.deepEqual(targetCurve(task, run(1, 0.5, [1, 0.25, 0.125])), [
      [0, 1],
      [50, 0.25],
      [100, 0.125],
    ]);
    assert.deepEqual(targetCurve(TASKS[0], run(1, 0.5, [1])), [[0, 1.5]]);
    assert.throws(() => targetCurve(task, { evals: [[0, 1]], lossFloor: null }), /excess over the loss floor, and this run has none/);
  });

  it('fixes the target as the tuning seeds’ median excess and counts steps on each seed’s own excess', () => {
    // Tuning excess at step 50: 0.25 and 0.75 (floors 0.5 and 0.9) → median 0.5.
    const t = fixTarget(task, [run(1000, 0.5, [1, 0.25, 0.1]), run(1001, 0.9, [1, 0.75, 0.1])], 0.01);
    assert.ok(Math.abs(t.target - 0.5) < 1e-12);
    assert.match(t.targetRule, /loss minus the seed's own loss floor/);
    // Raw losses 0.9 → 1.4 vs 0.5 → 1.0 would cross an absolute target at different steps; the excess ones do not.
    const evalRuns = [run(1, 0.5, [1, 0, 0]), run(2, 0.9, [1, 0, 0])];
    const rows = analyse(task, t.target, evalRuns, [1, 2], [{ name: 'muon', label: 'Muon' }], { muon: { lr: 0.01, atGridEdge: false, extensions: 0 } }, { muon: 'muon', dynmuonDefault: 'exact' });
    assert.deepEqual([rows[0].n_reached, rows[0].steps_to_target_median], [2, 25]);
  });
});

describe('race tallies', () => {
  it('counts wins per rule and per confidence bin', () => {
    const s = raceStats([
      { step: 9, rule: 'p_model', confidence: 0.9, winner: 'suggested' },
      { step: 49, rule: 'p_model', confidence: 0.3, winner: 'baseline' },
      { step: 89, rule: 'plateau', confidence: 0.75, winner: 'tie' },
      { step: 99, rule: 'plateau', confidence: 0.1, winner: 'suggested' },
    ]);
    assert.deepEqual(s.all, { won: 2, lost: 1, tied: 1, total: 4 });
    assert.deepEqual(s.byRule.p_model, { won: 1, lost: 1, tied: 0, total: 2 });
    assert.deepEqual(s.byConfidence['[0.75, 1]'], { won: 1, lost: 0, tied: 1, total: 2 });
    assert.deepEqual(Object.keys(s.byConfidence), ['[0, 0.25)', '[0.25, 0.5)', '[0.75, 1]']);
    const race = { step: 1, rule: 'p_model', confidence: 0.5, winner: 'tie' as const };
    const job = (optimizer: string, races?: (typeof race)[]) => ({ optimizer, races }) as unknown as JobResult;
    // Tuning and evaluation advisor runs count; other optimizers and runs without races do not.
    assert.equal(racesOf({ tuning: [job('advisor', [race]), job('exact', [race])], runs: [job('advisor', [race, race]), job('advisor')] }).length, 3);
    assert.deepEqual([0, 0.2499, 0.25, 0.5, 0.7499, 1].map(confidenceBin), ['[0, 0.25)', '[0, 0.25)', '[0.25, 0.5)', '[0.5, 0.75)', '[0.5, 0.75)', '[0.75, 1]']);
  });
});

describe('goal lines', () => {
  const adv = (task: string, m: [number, number, number], d: [number, number, number]): Row => ({
    task,
    optimizer: 'advisor',
    label: 'advisor',
    lr: 0.01,
    lr_at_grid_edge: false,
    grid_extensions: 0,
    n_seeds: 10,
    n_reached: 10,
    steps_to_target_median: 100,
    ratio_vs_muon: m[0],
    ratio_vs_muon_ci_low: m[1],
    ratio_vs_muon_ci_high: m[2],
    ratio_vs_dynmuon_default: d[0],
    ratio_vs_dynmuon_default_ci_low: d[1],
    ratio_vs_dynmuon_default_ci_high: d[2],
  });

  it('all three met', () => {
    const g = goalLines([adv('a', [0.8, 0.7, 0.9], [0.9, 0.85, 0.95]), adv('b', [0.85, 0.8, 0.99], [1, 0.9, 1.1]), adv('c', [1.05, 0.95, 1.2], [1, 0.9, 1.1])]);
    assert.deepEqual(
      g.map((x) => x.met),
      [true, true, true],
    );
    assert.match(g[0].detail, /^2 of 3 tasks \(a 0.800 \[0.700, 0.900\]; b 0.850/);
  });

  it('says by how much each missed goal is missed', () => {
    // Goal 1: a passes; b's median 0.950 is 0.050 above 0.9 (CI fine); c is further (median 1.000, CI upper 1.100).
    // Goal 2: c's CI lower bound against the default is 1.020. Goal 3: the lowest CI upper bound vs default is 1.030.
    const g = goalLines([adv('a', [0.8, 0.7, 0.9], [1, 0.95, 1.05]), adv('b', [0.95, 0.9, 0.99], [1, 0.97, 1.03]), adv('c', [1, 0.9, 1.1], [1.1, 1.02, 1.2])]);
    assert.deepEqual(
      g.map((x) => x.met),
      [false, false, false],
    );
    assert.match(g[0].detail, /1 of 3 tasks .*Short by 1 task; the closest: b: median 0.950 is 0.050 above 0.9$/);
    assert.equal(g[1].detail, 'slower than DynMuon default on c: CI lower bound 1.020, 0.020 above 1');
    assert.match(g[2].detail, /0 of 3 tasks .*Short: the lowest CI upper bound is b's 1.030, 0.030 at or above 1$/);
  });

  it('slower than Muon is an offence too, and no advisor rows meet nothing', () => {
    const g = goalLines([adv('a', [1.3, 1.1, 1.5], [1, 0.9, 1.1])]);
    assert.equal(g[1].detail, 'slower than tuned Muon on a: CI lower bound 1.100, 0.100 above 1');
    assert.match(g[0].detail, /Short by 2 tasks; the closest: a: median 1.300 is 0.400 above 0.9, CI upper bound 1.500 is 0.500 at or above 1$/);
    assert.deepEqual(
      goalLines([]).map((x) => [x.met, x.detail]),
      Array(3).fill([false, 'no advisor rows: the advisor variant was not run']),
    );
  });

  it('verdicts claim a difference only when the CI excludes 1', () => {
    assert.deepEqual([verdict(0.85, 0.8, 0.95), verdict(0.95, 0.9, 0.99), verdict(1.1, 1.01, 1.2), verdict(0.9, 0.8, 1), verdict(NaN, 1, 1)], ['faster (≥ 10%)', 'faster (< 10%)', 'slower', 'no difference', '—']);
  });
});

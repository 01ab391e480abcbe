/**
 * The harness's report: a Markdown summary with a plain verdict per optimizer and task, and two SVG plots
 * per task (validation loss with seed bands; the paired ratio's median and 95% CI against Muon). The SVG is
 * a few lines of markup written directly: a static file with no script, which VS Code's Markdown preview
 * and the dashboard open as an image.
 */
import type { Row, RaceOutcome, Tuned } from './analysis.js';
import { raceStats, targetCurve } from './analysis.js';
import type { JobResult } from './job.js';
import { OPTIMIZERS, type TaskSpec } from './plan.js';
import { median, percentile } from './stats.js';

export type { Row };

export interface TaskOutcome {
  task: TaskSpec;
  target: number;
  targetRule: string;
  floor: number | null;
  rows: Row[];
  runs: JobResult[];
  tuning: JobResult[];
  tuned: Record<string, Tuned>;
  tuningSeeds: number[];
  /** The starting grid per family, and every lr tried per optimizer (the starting grid and its extensions). */
  grid: { muon: number[]; adamw: number[] };
  tried: Record<string, number[]>;
}

/** Stable colours per optimizer (Okabe–Ito, colour-blind safe). */
const COLOURS = ['#000000', '#E69F00', '#56B4E9', '#009E73', '#F0E442', '#0072B2', '#D55E00', '#CC79A7'];
const colourOf = (name: string) => COLOURS[OPTIMIZERS.findIndex((o) => o.name === name) % COLOURS.length];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A difference is claimed only when the CI excludes 1; ≥ 10% is the goal's size of effect. */
export function verdict(ratio: number, low: number, high: number): string {
  if (![ratio, low, high].every(Number.isFinite)) return '—';
  if (high < 1) return ratio <= 0.9 ? 'faster (≥ 10%)' : 'faster (< 10%)';
  if (low > 1) return 'slower';
  return 'no difference';
}

export const verdictVsMuon = (r: Row) => (r.optimizer === 'muon' ? 'reference' : verdict(r.ratio_vs_muon, r.ratio_vs_muon_ci_low, r.ratio_vs_muon_ci_high));
export const verdictVsDefault = (r: Row) =>
  r.optimizer === 'exact' ? 'reference' : verdict(r.ratio_vs_dynmuon_default, r.ratio_vs_dynmuon_default_ci_low, r.ratio_vs_dynmuon_default_ci_high);

export function lossCurvesSvg(o: TaskOutcome): string {
  const W = 720;
  const H = 420;
  const m = { l: 60, r: 200, t: 30, b: 40 };
  const series = OPTIMIZERS.filter((opt) => o.runs.some((r) => r.optimizer === opt.name)).map((opt) => {
    const curves = o.runs.filter((r) => r.optimizer === opt.name && r.evals.length).map((r) => targetCurve(o.task, r));
    const steps = curves[0]?.map(([s]) => s) ?? [];
    const at = (i: number) => curves.map((c) => c[i]?.[1]).filter((v): v is number => Number.isFinite(v));
    return { name: opt.name, label: opt.label, points: steps.map((s, i) => ({ s, med: median(at(i)), lo: percentile(at(i), 25), hi: percentile(at(i), 75) })) };
  });
  const all = series.flatMap((x) => x.points.flatMap((p) => [p.lo, p.hi])).filter((v) => Number.isFinite(v) && v > 0);
  // A curve of the excess over the floor can touch zero (validation noise): the axis stops a decade below the target.
  const yMin = Math.log(Math.max(Math.min(o.target * 0.9, ...all), o.target / 10));
  const yMax = Math.log(percentile(all, 98));
  const xMax = o.task.steps;
  const x = (s: number) => m.l + (s / xMax) * (W - m.l - m.r);
  const y = (v: number) => m.t + (1 - (Math.log(Math.max(v, 1e-12)) - yMin) / (yMax - yMin)) * (H - m.t - m.b);
  const clampY = (v: number) => Math.max(m.t, Math.min(H - m.b, y(v)));
  const parts: string[] = [];
  for (const s of series) {
    if (!s.points.length) continue;
    const band = [...s.points.map((p) => `${x(p.s).toFixed(1)},${clampY(p.hi).toFixed(1)}`), ...[...s.points].reverse().map((p) => `${x(p.s).toFixed(1)},${clampY(p.lo).toFixed(1)}`)].join(' ');
    parts.push(`<polygon points="${band}" fill="${colourOf(s.name)}" fill-opacity="0.12" stroke="none"/>`);
    parts.push(`<polyline points="${s.points.map((p) => `${x(p.s).toFixed(1)},${clampY(p.med).toFixed(1)}`).join(' ')}" fill="none" stroke="${colourOf(s.name)}" stroke-width="1.6"/>`);
  }
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => Math.round(f * xMax));
  const yTicks = Array.from({ length: 5 }, (_, i) => Math.exp(yMin + ((yMax - yMin) * i) / 4));
  return svg(W, H, [
    `<text x="${m.l}" y="18" font-size="13">${esc(o.task.name)}: validation loss${o.task.target.overFloor ? ' above the seed\'s floor' : ''}, median and interquartile band over ${o.runs.filter((r) => r.optimizer === 'muon').length} seeds (log scale)</text>`,
    `<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="none" stroke="#999"/>`,
    ...ticks.map((s) => `<text x="${x(s)}" y="${H - m.b + 16}" font-size="11" text-anchor="middle">${s}</text>`),
    `<text x="${(m.l + W - m.r) / 2}" y="${H - 6}" font-size="11" text-anchor="middle">step</text>`,
    ...yTicks.map((v) => `<text x="${m.l - 6}" y="${y(v) + 4}" font-size="11" text-anchor="end">${v.toPrecision(3)}</text>`),
    `<line x1="${m.l}" x2="${W - m.r}" y1="${y(o.target)}" y2="${y(o.target)}" stroke="#C00" stroke-dasharray="5 4"/>`,
    `<text x="${W - m.r - 4}" y="${y(o.target) - 4}" font-size="11" text-anchor="end" fill="#C00">target ${o.target.toPrecision(4)}</text>`,
    ...parts,
    ...series.map((s, i) => `<rect x="${W - m.r + 12}" y="${m.t + i * 18}" width="12" height="3" fill="${colourOf(s.name)}"/><text x="${W - m.r + 30}" y="${m.t + i * 18 + 5}" font-size="11">${esc(s.name)}</text>`),
  ]);
}

/** Per optimizer two CIs: against tuned Muon (filled dot) and against DynMuon's default schedule (open dot). */
export function forestPlotSvg(o: TaskOutcome): string {
  const rows = o.rows.filter((r) => r.optimizer !== 'muon');
  const W = 760;
  const rowH = 34;
  const m = { l: 370, r: 40, t: 40, b: 40 };
  const H = m.t + m.b + rows.length * rowH;
  const values = rows
    .flatMap((r) => [r.ratio_vs_muon, r.ratio_vs_muon_ci_low, r.ratio_vs_muon_ci_high, r.ratio_vs_dynmuon_default, r.ratio_vs_dynmuon_default_ci_low, r.ratio_vs_dynmuon_default_ci_high])
    .filter((v) => Number.isFinite(v) && v > 0);
  const lo = Math.min(0.5, ...values);
  const hi = Math.max(1.5, ...values);
  const x = (v: number) => m.l + ((Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo))) * (W - m.l - m.r);
  const ticks = [0.5, 0.75, 0.9, 1, 1.25, 1.5, 2].filter((t) => t >= lo && t <= hi);
  const ci = (ratio: number, low: number, high: number, cy: number, c: string, open: boolean) =>
    [ratio, low, high].every((v) => Number.isFinite(v) && v > 0)
      ? `<line x1="${x(low)}" x2="${x(high)}" y1="${cy}" y2="${cy}" stroke="${c}" stroke-width="2"/><circle cx="${x(ratio)}" cy="${cy}" r="4.5" fill="${open ? '#fff' : c}" stroke="${c}" stroke-width="1.5"/>`
      : '';
  return svg(W, H, [
    `<text x="10" y="20" font-size="13">${esc(o.task.name)}: steps to target / reference's, paired by seed (median, bootstrap 95% CI; log scale)</text>`,
    `<text x="10" y="34" font-size="11">filled: vs tuned Muon; open: vs DynMuon exact with the default schedule</text>`,
    `<line x1="${x(1)}" x2="${x(1)}" y1="${m.t - 4}" y2="${H - m.b}" stroke="#666"/>`,
    `<line x1="${x(0.9)}" x2="${x(0.9)}" y1="${m.t - 4}" y2="${H - m.b}" stroke="#C00" stroke-dasharray="4 4"/>`,
    ...ticks.map((t) => `<text x="${x(t)}" y="${H - m.b + 16}" font-size="11" text-anchor="middle">${t}</text>`),
    ...rows.map((r, i) => {
      const cy = m.t + i * rowH + rowH / 2;
      const c = colourOf(r.optimizer);
      return [
        `<text x="10" y="${cy - 2}" font-size="11">${esc(r.label)}</text>`,
        `<text x="10" y="${cy + 11}" font-size="10" fill="#555">vs Muon: ${esc(verdictVsMuon(r))}; vs default: ${esc(verdictVsDefault(r))}</text>`,
        ci(r.ratio_vs_muon, r.ratio_vs_muon_ci_low, r.ratio_vs_muon_ci_high, cy - 5, c, false),
        ci(r.ratio_vs_dynmuon_default, r.ratio_vs_dynmuon_default_ci_low, r.ratio_vs_dynmuon_default_ci_high, cy + 6, c, true),
      ].join('');
    }),
  ]);
}

function svg(w: number, h: number, body: string[]): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif"><rect width="100%" height="100%" fill="#fff"/>${body.join('')}</svg>\n`;
}

const f3 = (v: number) => (Number.isFinite(v) ? v.toFixed(3) : '—');

const f2 = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : '—');
const ciText = (ratio: number, low: number, high: number) => `${f3(ratio)} [${f3(low)}, ${f3(high)}]`;

export interface GoalLine {
  goal: string;
  met: boolean;
  /** The numbers behind it and, when not met, by how much. */
  detail: string;
}

/** Tuned Muon must reach the target on at least this share of the evaluation seeds, or the task's ratios are mostly censored. */
export const MIN_REFERENCE_REACHED = 0.8;

/**
 * The issue's three goal lines, from the advisor's rows (one per task):
 * 1. ≥ 10% fewer steps than tuned Muon (median ratio ≤ 0.9) with the CI's upper bound < 1, on ≥ 2 tasks;
 * 2. never significantly slower (CI lower bound > 1) than tuned Muon or than DynMuon's default schedule;
 * 3. significantly faster than the default schedule (CI upper bound < 1) on ≥ 1 task.
 */
export function goalLines(rows: Row[], advisor = 'advisor'): GoalLine[] {
  const adv = rows.filter((r) => r.optimizer === advisor);
  const vsMuon = (r: Row) => `${r.task} ${ciText(r.ratio_vs_muon, r.ratio_vs_muon_ci_low, r.ratio_vs_muon_ci_high)}`;
  const vsDefault = (r: Row) => `${r.task} ${ciText(r.ratio_vs_dynmuon_default, r.ratio_vs_dynmuon_default_ci_low, r.ratio_vs_dynmuon_default_ci_high)}`;
  if (adv.length === 0) {
    const none = 'no advisor rows: the advisor variant was not run';
    return [
      { goal: '≥ 10% fewer steps than tuned Muon, CI upper bound < 1, on ≥ 2 tasks', met: false, detail: none },
      { goal: 'never significantly slower than tuned Muon or DynMuon default', met: false, detail: none },
      { goal: 'significantly faster than the default schedule on ≥ 1 task', met: false, detail: none },
    ];
  }

  // 1.
  const faster = (r: Row) => r.ratio_vs_muon <= 0.9 && r.ratio_vs_muon_ci_high < 1;
  const passing = adv.filter(faster);
  const need = Math.max(0, 2 - passing.length);
  // How far a task is from passing: the larger of its two shortfalls.
  const shortfall = (r: Row) => Math.max(r.ratio_vs_muon - 0.9, r.ratio_vs_muon_ci_high - 1);
  const closest = adv.filter((r) => !faster(r)).sort((a, b) => shortfall(a) - shortfall(b)).slice(0, need);
  const gap = (r: Row) => {
    const parts: string[] = [];
    if (!(r.ratio_vs_muon <= 0.9)) parts.push(`median ${f3(r.ratio_vs_muon)} is ${f3(r.ratio_vs_muon - 0.9)} above 0.9`);
    if (!(r.ratio_vs_muon_ci_high < 1)) parts.push(`CI upper bound ${f3(r.ratio_vs_muon_ci_high)} is ${f3(r.ratio_vs_muon_ci_high - 1)} at or above 1`);
    return `${r.task}: ${parts.join(', ')}`;
  };
  const g1: GoalLine = {
    goal: '≥ 10% fewer steps than tuned Muon, CI upper bound < 1, on ≥ 2 tasks',
    met: passing.length >= 2,
    detail:
      `${passing.length} of ${adv.length} tasks (${adv.map(vsMuon).join('; ')})` +
      (need > 0 ? `. Short by ${need} task${need > 1 ? 's' : ''}; the closest: ${closest.length ? closest.map(gap).join('; ') : 'none left'}` : ''),
  };

  // 2.
  const slowMuon = adv.filter((r) => r.ratio_vs_muon_ci_low > 1);
  const slowDefault = adv.filter((r) => r.ratio_vs_dynmuon_default_ci_low > 1);
  const offences = [
    ...slowMuon.map((r) => `slower than tuned Muon on ${r.task}: CI lower bound ${f3(r.ratio_vs_muon_ci_low)}, ${f3(r.ratio_vs_muon_ci_low - 1)} above 1`),
    ...slowDefault.map((r) => `slower than DynMuon default on ${r.task}: CI lower bound ${f3(r.ratio_vs_dynmuon_default_ci_low)}, ${f3(r.ratio_vs_dynmuon_default_ci_low - 1)} above 1`),
  ];
  const g2: GoalLine = {
    goal: 'never significantly slower than tuned Muon or DynMuon default',
    met: offences.length === 0,
    detail: offences.length ? offences.join('; ') : `the CI's lower bound is ≤ 1 on every task against both (vs Muon: ${adv.map(vsMuon).join('; ')}; vs default: ${adv.map(vsDefault).join('; ')})`,
  };

  // 3.
  const beatsDefault = adv.filter((r) => r.ratio_vs_dynmuon_default_ci_high < 1);
  const best = [...adv].sort((a, b) => a.ratio_vs_dynmuon_default_ci_high - b.ratio_vs_dynmuon_default_ci_high)[0];
  const g3: GoalLine = {
    goal: 'significantly faster than the default schedule on ≥ 1 task',
    met: beatsDefault.length >= 1,
    detail:
      `${beatsDefault.length} of ${adv.length} tasks (${adv.map(vsDefault).join('; ')})` +
      (beatsDefault.length ? '' : `. Short: the lowest CI upper bound is ${best.task}'s ${f3(best.ratio_vs_dynmuon_default_ci_high)}, ${f3(best.ratio_vs_dynmuon_default_ci_high - 1)} at or above 1`),
  };
  return [g1, g2, g3];
}

export interface ReportMeta {
  date: string;
  size: string;
  variants: string;
  revision: string;
  cpu: string;
  cores: number;
  minutes: number;
  evalSeeds: number[];
  tuningSeeds: number[];
  maxExtensions: number;
  /** Steps per fork-and-race branch, or null when the advisor runs did not race their suggestions. */
  raceSteps: number | null;
}

/**
 * Every race of a task's advisor runs, the tuning runs' (other lrs, other seeds) with the evaluation runs':
 * each race is its own comparison from one state, so all of them calibrate the advice.
 */
export function racesOf(o: Pick<TaskOutcome, 'tuning' | 'runs'>): RaceOutcome[] {
  return [...o.tuning, ...o.runs].filter((r) => r.optimizer === 'advisor').flatMap((r) => r.races ?? []);
}

function raceTable(races: RaceOutcome[]): string[] {
  const s = raceStats(races);
  const rowOf = (k: string, t: { won: number; lost: number; tied: number; total: number }) => `| ${k} | ${t.won} | ${t.lost} | ${t.tied} | ${t.total} | ${t.total ? f2(t.won / t.total) : '—'} |`;
  return [
    `The advisor's choice won ${s.all.won} of ${s.all.total} races (lost ${s.all.lost}, tied ${s.all.tied}).`,
    '',
    '| rule / confidence | won | lost | tied | races | win rate |',
    '|---|---|---|---|---|---|',
    ...Object.entries(s.byRule).map(([k, t]) => rowOf(`rule ${k}`, t)),
    ...Object.entries(s.byConfidence).map(([k, t]) => rowOf(`confidence ${k}`, t)),
  ];
}

export function markdownReport(outcomes: TaskOutcome[], meta: ReportMeta): string {
  const cmd = meta.size === 'quick' ? 'npm run bench:advisor' : `npm run bench:advisor -- --${meta.size === 'full' ? 'full' : `size ${meta.size}`}`;
  const lines: string[] = [
    '# Advisor evidence report',
    '',
    `Generated by \`${cmd}${meta.variants === 'all' ? ' --variants all' : ''}\` on ${meta.date.slice(0, 10)} at revision ${meta.revision} (${meta.cpu}, ${meta.cores} cores, ${meta.minutes.toFixed(0)} min).`,
    `Size **${meta.size}**: ${meta.evalSeeds.length} evaluation seeds, ${meta.tuningSeeds.length} tuning seed(s) per lr.${meta.size !== 'full' ? ' Too few seeds and steps for conclusions: a run of the protocol, not evidence.' : ''}`,
    '',
    'Protocol (docs/algorithms.md §7): every optimizer starts from the same initialization and reads the same data per seed. Its lr is tuned on separate',
    `seeds (lowest mean validation loss over the last three evaluations), starting from the task's grid (×2 spacing); while the best lr is the grid's smallest or largest,`,
    `the grid is extended one step past that edge, at most ${meta.maxExtensions} times — "grid edge" marks a tuned lr still at the edge after that. The target is fixed from the tuning`,
    'runs before any evaluation run. Steps to target are interpolated between evaluations; a run that never reaches it counts as the full budget (its ratio is a bound).',
    'Ratios are steps(X)/steps(reference) paired by seed, against tuned Muon and against DynMuon exact with the default (published) schedule; the CI is a percentile',
    'bootstrap of the median over seeds. A difference is claimed only when the CI excludes 1.',
    '',
  ];
  const allRaces: RaceOutcome[] = [];
  const censored: string[] = [];
  for (const o of outcomes) {
    lines.push(`## ${o.task.name}`, '', `${o.task.label}; ${o.task.steps} steps, evaluation every ${o.task.evalEvery}.`, '', `Target: **${o.target.toFixed(4)}** (${o.targetRule}).`, '');
    lines.push(`Starting lr grid: Muon family ${o.grid.muon.join(', ')}; AdamW ${o.grid.adamw.join(', ')}; tuning seeds ${o.tuningSeeds.join(', ')}.`, '');
    lines.push(
      '| optimizer | tuned lr | lrs tried | reached | median steps | ratio vs Muon [95% CI] | vs Muon | ratio vs DynMuon default [95% CI] | vs default |',
      '|---|---|---|---|---|---|---|---|---|',
    );
    for (const r of o.rows) {
      const tried = o.tried[r.optimizer] ?? [];
      lines.push(
        `| ${r.label} | ${r.lr}${r.lr_at_grid_edge ? ' (**grid edge**)' : ''} | ${tried.join(', ')}${r.grid_extensions ? ` (${r.grid_extensions} added)` : ''} | ${r.n_reached}/${r.n_seeds} | ${Number.isFinite(r.steps_to_target_median) ? Math.round(r.steps_to_target_median) : 'not reached'} | ${ciText(r.ratio_vs_muon, r.ratio_vs_muon_ci_low, r.ratio_vs_muon_ci_high)} | ${verdictVsMuon(r)} | ${ciText(r.ratio_vs_dynmuon_default, r.ratio_vs_dynmuon_default_ci_low, r.ratio_vs_dynmuon_default_ci_high)} | ${verdictVsDefault(r)} |`,
      );
    }
    const edges = o.rows.filter((r) => r.lr_at_grid_edge);
    if (edges.length) lines.push('', `**Grid edge**: ${edges.map((r) => `${r.optimizer} at ${r.lr}`).join(', ')} — still the best at an edge after ${meta.maxExtensions} extensions; its optimum may lie beyond.`);
    const muon = o.rows.find((r) => r.optimizer === 'muon');
    if (muon && muon.n_reached < MIN_REFERENCE_REACHED * muon.n_seeds) {
      censored.push(o.task.name);
      lines.push('', `**Censored**: tuned Muon reached the target on only ${muon.n_reached} of ${muon.n_seeds} seeds (the rule needs ≥ ${Math.ceil(MIN_REFERENCE_REACHED * muon.n_seeds)}); the ratios here are mostly bounds.`);
    }
    const adv = o.runs.filter((r) => r.optimizer === 'advisor');
    const byRule = new Map<string, number>();
    for (const r of adv) for (const a of r.applied) byRule.set(a.rule, (byRule.get(a.rule) ?? 0) + 1);
    lines.push('', `Advisor in \`auto\` (every suggestion applied): ${adv.reduce((a, r) => a + r.suggestions, 0)} suggestions over ${adv.length} runs, applied: ${[...byRule].map(([k, v]) => `${k} ×${v}`).join(', ') || 'none'}.`);
    const example = adv.find((r) => r.applied.length);
    if (example) lines.push(`Seed ${example.seed}: ${example.applied.slice(0, 4).map((a) => `step ${a.step}: ${a.title}`).join('; ')}.`);
    const races = racesOf(o);
    allRaces.push(...races);
    const unraced = [...o.tuning, ...o.runs].filter((r) => r.optimizer === 'advisor').reduce((a, r) => a + (r.unraced ?? 0), 0);
    if (races.length) lines.push('', `Races in this task's advisor runs (tuning and evaluation)${unraced ? `; ${unraced} suggestions applied unraced (too close to the end, or the race refused)` : ''}:`, '', ...raceTable(races));
    lines.push('', `![validation loss](advisor-${o.task.name}-loss.svg)`, '', `![ratios](advisor-${o.task.name}-ratios.svg)`, '');
  }
  lines.push('## Fork-and-race calibration', '');
  if (meta.raceSteps === null) lines.push('The advisor runs did not race their suggestions in this run.', '');
  else if (allRaces.length === 0) lines.push(`Races of ${meta.raceSteps} steps per branch were on, but no suggestion was raced.`, '');
  else lines.push(`Before each suggestion was applied, the run raced it: ${meta.raceSteps} steps as set against ${meta.raceSteps} steps with the change, on the same batches, scored on held-out data (trainer/run/race.ts); the suggestion was applied whatever the outcome. All tasks, tuning and evaluation runs:`, '', ...raceTable(allRaces), '');
  lines.push('## Verdict on the goal', '');
  for (const g of goalLines(outcomes.flatMap((o) => o.rows))) lines.push(`- ${g.goal}: **${g.met ? 'met' : 'not met'}**. ${g.detail}.`);
  if (censored.length) lines.push('', `Censored tasks (tuned Muon below ${MIN_REFERENCE_REACHED * 100}% reached): ${censored.join(', ')}.`);
  if (meta.size !== 'full') lines.push('', `Size ${meta.size}: run \`--full\` before concluding anything.`);
  lines.push('');
  return lines.join('\n');
}

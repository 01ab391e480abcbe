/**
 * The harness's report: a Markdown summary with a plain verdict per optimizer and task, and two SVG plots
 * per task (validation loss with seed bands; the paired ratio's median and 95% CI against Muon). The SVG is
 * a few lines of markup written directly: a static file with no script, which VS Code's Markdown preview
 * and the dashboard open as an image.
 */
import type { JobResult } from './job.js';
import { OPTIMIZERS, type TaskSpec } from './plan.js';
import { median, percentile } from './stats.js';

export interface Row {
  task: string;
  optimizer: string;
  label: string;
  lr: number;
  /** The tuned lr is the grid's smallest or largest: the optimum may lie outside it. */
  lr_at_grid_edge: boolean;
  n_seeds: number;
  n_reached: number;
  steps_to_target_median: number;
  ratio_vs_muon: number;
  ci_low: number;
  ci_high: number;
}

export interface TaskOutcome {
  task: TaskSpec;
  target: number;
  targetRule: string;
  floor: number | null;
  rows: Row[];
  runs: JobResult[];
  tuning: JobResult[];
  tunedLr: Record<string, number>;
  tuningSeeds: number[];
  grid: { muon: number[]; adamw: number[] };
}

/** Stable colours per optimizer (Okabe–Ito, colour-blind safe). */
const COLOURS = ['#000000', '#E69F00', '#56B4E9', '#009E73', '#F0E442', '#0072B2', '#D55E00', '#CC79A7'];
const colourOf = (name: string) => COLOURS[OPTIMIZERS.findIndex((o) => o.name === name) % COLOURS.length];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function verdict(r: Row): string {
  if (r.optimizer === 'muon') return 'reference';
  if (r.ci_high < 1) return r.ratio_vs_muon <= 0.9 ? 'faster (≥ 10%)' : 'faster (< 10%)';
  if (r.ci_low > 1) return 'slower';
  return 'no difference';
}

export function lossCurvesSvg(o: TaskOutcome): string {
  const W = 720;
  const H = 420;
  const m = { l: 60, r: 200, t: 30, b: 40 };
  const series = OPTIMIZERS.map((opt) => {
    const runs = o.runs.filter((r) => r.optimizer === opt.name && r.evals.length);
    const steps = runs[0]?.evals.map(([s]) => s) ?? [];
    const at = (i: number) => runs.map((r) => r.evals[i]?.[1]).filter((v): v is number => Number.isFinite(v));
    return { name: opt.name, label: opt.label, points: steps.map((s, i) => ({ s, med: median(at(i)), lo: percentile(at(i), 25), hi: percentile(at(i), 75) })) };
  });
  const all = series.flatMap((x) => x.points.flatMap((p) => [p.lo, p.hi])).filter((v) => Number.isFinite(v) && v > 0);
  const yMin = Math.log(Math.min(o.target * 0.9, ...all));
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
    `<text x="${m.l}" y="18" font-size="13">${esc(o.task.name)}: validation loss, median and interquartile band over ${o.runs.filter((r) => r.optimizer === 'muon').length} seeds (log scale)</text>`,
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

export function forestPlotSvg(o: TaskOutcome): string {
  const rows = o.rows.filter((r) => r.optimizer !== 'muon');
  const W = 720;
  const rowH = 26;
  const m = { l: 330, r: 40, t: 40, b: 40 };
  const H = m.t + m.b + rows.length * rowH;
  const values = rows.flatMap((r) => [r.ci_low, r.ci_high, r.ratio_vs_muon]).filter(Number.isFinite);
  const lo = Math.min(0.5, ...values);
  const hi = Math.max(1.5, ...values);
  const x = (v: number) => m.l + ((Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo))) * (W - m.l - m.r);
  const ticks = [0.5, 0.75, 0.9, 1, 1.25, 1.5, 2].filter((t) => t >= lo && t <= hi);
  return svg(W, H, [
    `<text x="10" y="20" font-size="13">${esc(o.task.name)}: steps to target / Muon's, paired by seed (median, bootstrap 95% CI; log scale)</text>`,
    `<line x1="${x(1)}" x2="${x(1)}" y1="${m.t - 8}" y2="${H - m.b}" stroke="#666"/>`,
    `<line x1="${x(0.9)}" x2="${x(0.9)}" y1="${m.t - 8}" y2="${H - m.b}" stroke="#C00" stroke-dasharray="4 4"/>`,
    ...ticks.map((t) => `<text x="${x(t)}" y="${H - m.b + 16}" font-size="11" text-anchor="middle">${t}</text>`),
    ...rows.map((r, i) => {
      const cy = m.t + i * rowH + rowH / 2;
      const c = colourOf(r.optimizer);
      return [
        `<text x="10" y="${cy + 4}" font-size="11">${esc(r.label)} — ${esc(verdict(r))}</text>`,
        `<line x1="${x(r.ci_low)}" x2="${x(r.ci_high)}" y1="${cy}" y2="${cy}" stroke="${c}" stroke-width="2"/>`,
        `<circle cx="${x(r.ratio_vs_muon)}" cy="${cy}" r="4.5" fill="${c}"/>`,
      ].join('');
    }),
  ]);
}

function svg(w: number, h: number, body: string[]): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif"><rect width="100%" height="100%" fill="#fff"/>${body.join('')}</svg>\n`;
}

const f3 = (v: number) => (Number.isFinite(v) ? v.toFixed(3) : '—');

export function markdownReport(outcomes: TaskOutcome[], meta: { date: string; size: string; cpu: string; cores: number; minutes: number; evalSeeds: number[]; tuningSeeds: number[] }): string {
  const lines: string[] = [
    '# Advisor evidence report',
    '',
    `Generated by \`npm run bench:advisor${meta.size === 'full' ? ' -- --full' : ''}\` on ${meta.date.slice(0, 10)} (${meta.cpu}, ${meta.cores} cores, ${meta.minutes.toFixed(0)} min).`,
    `Size **${meta.size}**: ${meta.evalSeeds.length} evaluation seeds, ${meta.tuningSeeds.length} tuning seed(s) per lr.${meta.size === 'quick' ? ' A smoke run of the protocol: too few seeds for conclusions.' : ''}`,
    '',
    'Protocol (docs/algorithms.md §7): every optimizer starts from the same initialization and reads the same data per seed; its lr is tuned on separate',
    'seeds with the same grid (lowest mean validation loss over the last three evaluations); the target is fixed before the evaluation runs;',
    'steps to target are interpolated between evaluations; a run that never reaches it counts as the full budget (so its ratio is a lower bound).',
    'The ratio is steps(X)/steps(Muon) per seed; the CI is a percentile bootstrap of the median over seeds. A difference is claimed only when the CI excludes 1.',
    '',
  ];
  const goal: { task: string; ok: boolean; worse: boolean; row: Row }[] = [];
  for (const o of outcomes) {
    lines.push(`## ${o.task.name}`, '', `${o.task.label}; ${o.task.steps} steps, evaluation every ${o.task.evalEvery}.`, '', `Target: **${o.target.toFixed(4)}** (${o.targetRule}).`, '');
    lines.push(`lr grid: Muon family ${o.grid.muon.join(', ')}; AdamW ${o.grid.adamw.join(', ')}; tuning seeds ${o.tuningSeeds.join(', ')}.`, '');
    lines.push('| optimizer | tuned lr | reached | median steps | ratio vs Muon | 95% CI | verdict |', '|---|---|---|---|---|---|---|');
    for (const r of o.rows) {
      lines.push(`| ${r.label} | ${r.lr}${r.lr_at_grid_edge ? ' (grid edge)' : ''} | ${r.n_reached}/${r.n_seeds} | ${Number.isFinite(r.steps_to_target_median) ? Math.round(r.steps_to_target_median) : 'not reached'} | ${f3(r.ratio_vs_muon)} | [${f3(r.ci_low)}, ${f3(r.ci_high)}] | ${verdict(r)} |`);
    }
    const adv = o.runs.filter((r) => r.optimizer === 'advisor');
    const byRule = new Map<string, number>();
    for (const r of adv) for (const a of r.applied) byRule.set(a.rule, (byRule.get(a.rule) ?? 0) + 1);
    lines.push('', `Advisor in \`auto\`: ${adv.reduce((a, r) => a + r.suggestions, 0)} suggestions over ${adv.length} runs, applied: ${[...byRule].map(([k, v]) => `${k} ×${v}`).join(', ') || 'none'}.`);
    const example = adv.find((r) => r.applied.length);
    if (example) lines.push(`Seed ${example.seed}: ${example.applied.slice(0, 4).map((a) => `step ${a.step}: ${a.title}`).join('; ')}.`);
    lines.push('', `![validation loss](advisor-${o.task.name}-loss.svg)`, '', `![ratios](advisor-${o.task.name}-ratios.svg)`, '');
    const row = o.rows.find((r) => r.optimizer === 'advisor');
    if (row) goal.push({ task: o.task.name, ok: row.ratio_vs_muon <= 0.9 && row.ci_high < 1, worse: row.ci_low > 1, row });
  }
  const met = goal.filter((g) => g.ok).length >= 2 && !goal.some((g) => g.worse);
  lines.push('## Verdict on the goal', '');
  lines.push('Goal: with the advisor in `auto`, at least 10% fewer steps than tuned Muon with the 95% CI below 1 on at least two task settings, and never significantly worse.', '');
  for (const g of goal) lines.push(`- ${g.task}: ratio ${f3(g.row.ratio_vs_muon)} [${f3(g.row.ci_low)}, ${f3(g.row.ci_high)}] — ${verdict(g.row)}.`);
  lines.push('', met ? '**Met.**' : `**Not met** on this evidence${meta.size === 'quick' ? ' (quick size: run `--full` before concluding anything)' : ''}.`, '');
  return lines.join('\n');
}

/**
 * The advisor's rules (docs/algorithms.md §8; their premises §2, §4, §5): each reads the observations and either proposes one
 * change with the measurements behind it, or nothing. Pure functions; each is tested on its own.
 *
 * The premise they encode is DynMuon's: p > 0 emphasises large-σ directions, worth it while those are
 * high-curvature directions that still carry signal; once they have converged (their gradient is mostly
 * noise) a mildly negative p moves update strength to the low-curvature directions that still learn.
 * The mode model (docs/algorithms.md §10) measures the same trade-off over a horizon of steps, so a fresh,
 * confident recommendation outranks the heuristics. Instability overrides everything. Every p change is a
 * change of the schedule in force (schedule-change.ts: retimed, its range moved, p held), not a constant.
 */
import { OVERSHOOT_FRACTION_PERSISTENT, type AdvisorRule, type Evidence, type RecordOf, type SuggestedChange } from '../../common/protocol.js';
import type { ScheduleSpec } from '../../common/schedules.js';
import { mean, median, type Observations } from './observations.js';
import { changeSchedule, P_GRID_STEP } from './schedule-change.js';

export interface Proposal {
  rule: AdvisorRule;
  /** What the change acts on; at most one pending suggestion per target. */
  target: 'lr' | 'p';
  title: string;
  change: SuggestedChange;
  evidence: Evidence[];
  confidence: number;
  expectedEffect: string;
}

export interface RuleSettings {
  /** Measurements older than this many steps are not used. */
  maxAge: number;
}

/** A step beyond 2η* (η* measured before the step) increases the quadratic model's loss along the update (§4). */
export const ETA_RATIO_UNSTABLE = 2;
/** Overshoot: more than OVERSHOOT_FRACTION_PERSISTENT of at least this many steps had g_{t+1}ᵀd_t < 0. */
export const OVERSHOOT_MIN_STEPS = 20;
/** Loss spike: the mean of the last few losses this many times the median of the window before. */
export const LOSS_SPIKE_FACTOR = 1.5;
const SPIKE_RECENT = 5;
const SPIKE_BASELINE = 30;
/**
 * SNR of the batch gradient along a direction (|mean|/std of the K-microbatch mean, the runner's `snrOf:
 * 'batch'`): above this it carries signal, below SNR_LOW mostly noise. The rules ask the 95% interval to
 * clear the threshold, not the point: with K = 8, a point estimate alone misreads a true SNR of 2 often.
 */
export const SNR_HIGH = 2;
export const SNR_LOW = 1;
/** κ_top/κ_bottom above this: curvature rises with σ, DynMuon's premise for p > 0. */
export const KAPPA_RISING_RATIO = 2;
/** The mode model's bootstrap confidence (share of replicates within one grid step) both records need. */
export const P_MODEL_MIN_CONFIDENCE = 0.6;
/**
 * p_model suggestions stay below the default auto threshold (0.5) for now: the model agrees with its
 * simulated oracle within one grid step at 31 of 36 points (docs/algorithms.md §10), but no evidence bench
 * has yet shown that applying its changes unattended beats the schedule in force on real runs (the one-step
 * probe it replaces did not, §8). The evidence bench decides later whether the cap goes.
 */
export const P_MODEL_CONFIDENCE_CAP = 0.45;
/**
 * keep_p_positive's confidence is capped at its measured win rate (0.47), below the default auto threshold: in
 * the full evidence run (test/bench/results/advisor.md, 2026-12-01) its suggestions claimed 0.5–0.8, and its
 * choice won 50 of 107 fork-and-races (47%; lost 35, tied 22), while following every one of them changed no
 * task's steps to target against the schedule it retimed (ratios 1.000–1.011). Worth showing, with its
 * calibration; not worth applying unattended.
 */
export const KEEP_P_POSITIVE_CONFIDENCE_CAP = 0.47;
/** Plateau: the validation loss improved by less than this fraction over the last evaluations. */
export const PLATEAU_IMPROVEMENT = 0.005;
const PLATEAU_EVALS = 4;
/** Plateau with steps far below the quadratic optimum: η_actual/η* under this. */
export const ETA_RATIO_TIMID = 0.25;
/**
 * Noise-bound plateau: the whole model's B_simple above this many times the batch size. Then a step averages
 * too few examples for its direction to be mostly signal (§5), and a larger lr only adds noise.
 */
export const NOISE_BOUND_FACTOR = 2;
/** lr factors: a step-bound plateau raises the lr, a noise-bound one lowers it (less noise per step). */
export const PLATEAU_LR_UP = 1.5;
export const PLATEAU_LR_DOWN = 0.5;

/** p the heuristics move to: the published schedule's end points (Track-3 logistic, §2). */
export const P_POSITIVE = 0.25;
export const P_NEGATIVE = -0.25;
/** Below this |p| the run is treated as at p = 0 (plain Muon). */
const P_EPS = 0.05;

const clamp01 = (x: number) => Math.max(0, Math.min(1, x));
const round = (x: number, digits = 4) => Number(x.toPrecision(digits));

/** The schedule in force; a run whose log does not name one is treated as holding its current p. */
function scheduleInForce(o: Observations): ScheduleSpec | null {
  if (o.schedule) return o.schedule.spec;
  return o.p === null ? null : { type: 'constant', p: o.p };
}

/** A change of the schedule in force that makes p `target` from the next step on (null if there is nothing to change). */
function scheduleTowards(o: Observations, target: number, horizonSteps: number, reason: string): { change: SuggestedChange; description: string } | null {
  const spec = scheduleInForce(o);
  const total = o.run?.totalSteps;
  if (!spec || !total) return null;
  const from = o.step + 1;
  try {
    const c = changeSchedule({ spec, q: Math.min(1, from / total), qEnd: (from + horizonSteps) / total, target });
    return { change: { kind: 'set_schedule', schedule: c.spec, fromStep: from, reason }, description: c.description };
  } catch {
    return null; // p is already the target (the schedule needs no change)
  }
}

/** What the schedule in force would set over a mode-model record's horizon: the mean of its p at the start and the end. */
function scheduleMean(r: RecordOf<'p_model'>): number {
  return 0.5 * (r.scheduleP.start + r.scheduleP.end);
}

/** The latest fresh, confident mode-model record (logged after the last schedule change), if any. */
function freshPModel(o: Observations, s: RuleSettings): RecordOf<'p_model'> | null {
  const last = o.pModelsSinceScheduleChange(s.maxAge).at(-1);
  return last && last.confidence >= P_MODEL_MIN_CONFIDENCE ? last : null;
}

/**
 * Instability, in Muon's units (§4): η/η* > 2 before the step on two consecutive probes, a persistent
 * overshoot fraction, a loss spike; two kinds are needed. Not κ against 2/η_eff or λ_c against 2/lr:
 * those are gradient descent's tests, and critical sharpness from the same point and direction is η*
 * again, not a second piece of evidence.
 */
export function instabilityRule(o: Observations, s: RuleSettings): Proposal | null {
  if (o.lr === null) return null;
  const evidence: Evidence[] = [];
  const recent = o.updateCurvature.filter((c) => o.step - c.step <= s.maxAge).slice(-2);
  const ratios = recent.map((c) => (c.etaStar !== null && c.etaStar > 0 ? c.etaActual / c.etaStar : null));
  if (recent.length === 2 && ratios.every((r) => r !== null && r > ETA_RATIO_UNSTABLE)) {
    recent.forEach((c, i) => evidence.push({ name: 'η/η* before the step', value: round(ratios[i]!), threshold: ETA_RATIO_UNSTABLE, comparison: '>', step: c.step, note: 'the step overshoots the quadratic optimum along the update' }));
  }
  const os = o.overshoot;
  if (os && o.step - os.step <= s.maxAge && os.steps >= OVERSHOOT_MIN_STEPS && os.fraction > OVERSHOOT_FRACTION_PERSISTENT) {
    evidence.push({ name: `fraction of the last ${os.steps} steps with g_{t+1}ᵀd_t < 0`, value: round(os.fraction), threshold: OVERSHOOT_FRACTION_PERSISTENT, comparison: '>', step: os.step, note: 'the steps keep passing the minimum along their own direction' });
  }
  const losses = o.losses.map((l) => l.loss);
  if (losses.length >= SPIKE_RECENT + SPIKE_BASELINE) {
    const recentMean = mean(losses.slice(-SPIKE_RECENT));
    const baseline = median(losses.slice(-(SPIKE_RECENT + SPIKE_BASELINE), -SPIKE_RECENT));
    if (recentMean > LOSS_SPIKE_FACTOR * baseline) {
      evidence.push({ name: `mean loss of the last ${SPIKE_RECENT} steps / median of the ${SPIKE_BASELINE} before`, value: round(recentMean / baseline), threshold: LOSS_SPIKE_FACTOR, comparison: '>', step: o.step, note: 'loss spike' });
    }
  }
  // One curvature signal alone is common in noisy early training; ask for two kinds of evidence.
  const kinds = new Set(evidence.map((e) => e.name)).size;
  if (kinds < 2) return null;
  const lr = o.lr * 0.5;
  return {
    rule: 'instability',
    target: 'lr',
    title: `Halve the learning rate (${fmt(o.lr)} → ${fmt(lr)}): the step is past the stable size`,
    change: { kind: 'set_lr', lr, reason: 'advisor: instability' },
    evidence,
    confidence: clamp01(0.3 + 0.2 * kinds),
    expectedEffect: 'the step falls back inside the quadratic model\'s stable range (η < 2η*); the loss resumes decreasing instead of oscillating',
  };
}

/** Large-σ directions: their curvature ratio and SNR, over the layers measured recently. */
function topDirectionSummary(o: Observations, s: RuleSettings) {
  const dirs = o.recentDirections(s.maxAge);
  const kappaRatios = dirs
    .map(([layer, d]) => {
      const top = mean(d.top.map((x) => x.kappa));
      const bottom = mean(d.bottom.map((x) => x.kappa));
      return { layer, step: d.step, ratio: bottom > 0 ? top / bottom : top > 0 ? Infinity : 0 };
    })
    .filter((r) => !Number.isNaN(r.ratio));
  // Only the batch SNR, with its interval: the thresholds are in its units (a microbatch's is √K smaller).
  const snrs = o
    .recentSnr(s.maxAge)
    .filter(([, x]) => x.of === 'batch')
    .map(([layer, x]) => ({ layer, step: x.step, top: x.top[0] ?? NaN, topLow: x.topLow[0] ?? NaN, topHigh: x.topHigh[0] ?? NaN, bottom: median(x.bottom) }));
  return { kappaRatios, snrs };
}

/** Keep p positive while high-curvature directions still carry signal and κ rises with σ. */
export function keepPPositiveRule(o: Observations, s: RuleSettings): Proposal | null {
  if (o.run?.optimizer !== 'dynmuon' || o.p === null || o.p > P_EPS) return null;
  const { kappaRatios, snrs } = topDirectionSummary(o, s);
  if (kappaRatios.length === 0 || snrs.length === 0) return null;
  const ratio = median(kappaRatios.map((r) => Math.min(r.ratio, 1e6)));
  const low = median(snrs.map((x) => x.topLow).filter(Number.isFinite));
  if (!(ratio > KAPPA_RISING_RATIO && low > SNR_HIGH)) return null;
  // A fresh, confident mode model that puts p at or below the schedule's measured this trade-off directly.
  const model = freshPModel(o, s);
  if (model && model.recommendedP <= scheduleMean(model)) return null;
  const proposal = scheduleTowards(o, P_POSITIVE, 0, 'advisor: top directions still learning');
  if (!proposal) return null;
  return {
    rule: 'keep_p_positive',
    target: 'p',
    title: `Keep p positive (${fmt(o.p)} → ${P_POSITIVE}): the top directions are high-curvature and still carry signal. ${proposal.description}`.slice(0, 300),
    change: proposal.change,
    evidence: [
      { name: 'κ_top/κ_bottom (median over layers)', value: round(ratio), threshold: KAPPA_RISING_RATIO, comparison: '>', step: Math.max(...kappaRatios.map((r) => r.step)), note: 'curvature rises with σ' },
      { name: 'Batch SNR along the top direction, lower 95% bound (median over layers)', value: round(low), threshold: SNR_HIGH, comparison: '>', step: Math.max(...snrs.map((x) => x.step)), note: `point estimate ${fmt(median(snrs.map((x) => x.top)))}` },
      { name: 'p now', value: o.p, threshold: P_EPS, comparison: '<' },
    ],
    confidence: Math.min(KEEP_P_POSITIVE_CONFIDENCE_CAP, clamp01(0.25 * Math.min(2, ratio / KAPPA_RISING_RATIO) + 0.25 * Math.min(2, low / SNR_HIGH)) * 0.8),
    expectedEffect: 'larger steps along the high-curvature, high-signal directions while they still reduce the loss fastest',
  };
}

/** Move p mildly negative once the top directions are noise and the low-σ directions carry relatively more signal. */
export function movePNegativeRule(o: Observations, s: RuleSettings): Proposal | null {
  if (o.run?.optimizer !== 'dynmuon' || o.p === null || o.p < -P_EPS) return null;
  const { kappaRatios, snrs } = topDirectionSummary(o, s);
  const usable = snrs.filter((x) => Number.isFinite(x.top) && Number.isFinite(x.topHigh) && Number.isFinite(x.bottom));
  if (usable.length === 0) return null;
  const top = median(usable.map((x) => x.top));
  const high = median(usable.map((x) => x.topHigh));
  const bottom = median(usable.map((x) => x.bottom));
  const ratio = kappaRatios.length ? median(kappaRatios.map((r) => Math.min(r.ratio, 1e6))) : null;
  if (!(high < SNR_LOW && bottom > top && (ratio === null || ratio <= KAPPA_RISING_RATIO))) return null;
  const model = freshPModel(o, s);
  if (model && model.recommendedP >= scheduleMean(model)) return null;
  const proposal = scheduleTowards(o, P_NEGATIVE, 0, 'advisor: top directions converged');
  if (!proposal) return null;
  const evidence: Evidence[] = [
    { name: 'Batch SNR along the top direction, upper 95% bound (median over layers)', value: round(high), threshold: SNR_LOW, comparison: '<', step: Math.max(...usable.map((x) => x.step)), note: `point estimate ${fmt(top)}: the top directions have converged, their gradient is mostly noise` },
    { name: 'Batch SNR along the bottom directions (median over layers)', value: round(bottom), threshold: round(top), comparison: '>', note: 'the remaining signal lies in low-σ directions' },
  ];
  if (ratio !== null) evidence.push({ name: 'κ_top/κ_bottom (median over layers)', value: round(ratio), threshold: KAPPA_RISING_RATIO, comparison: '<' });
  return {
    rule: 'move_p_negative',
    target: 'p',
    title: `Move p mildly negative (${fmt(o.p)} → ${P_NEGATIVE}): the top directions have converged. ${proposal.description}`.slice(0, 300),
    change: proposal.change,
    evidence,
    confidence: clamp01(0.3 + 0.3 * clamp01((SNR_LOW - high) / SNR_LOW) + 0.2 * clamp01(bottom / Math.max(top, 1e-9) - 1)),
    expectedEffect: 'more of each step goes to the low-curvature directions that still learn; damping bounds how much noise directions are amplified',
  };
}

/** The curve's point nearest p (the curve is on the model's p grid). */
function curveAt(r: RecordOf<'p_model'>, p: number): RecordOf<'p_model'>['curve'][number] {
  return r.curve.reduce((a, b) => (Math.abs(b.p - p) < Math.abs(a.p - p) ? b : a));
}

/**
 * The mode model's p (§10), with hysteresis: the last two p_model records logged since the last schedule
 * change both have confidence ≥ P_MODEL_MIN_CONFIDENCE and recommend a p more than one grid step from the
 * schedule's p over their horizon (the mean of its start and end), on the same side, and neither's
 * independent-batch cross-check prefers a p on the other side. One record is never enough: a single
 * bootstrap can be confident and wrong, and a schedule that moves p anyway must not be chased.
 */
export function pModelRule(o: Observations, s: RuleSettings): Proposal | null {
  if (o.run?.optimizer !== 'dynmuon' || o.p === null) return null;
  const recent = o.pModelsSinceScheduleChange(s.maxAge).slice(-2);
  if (recent.length < 2) return null;
  const sides = recent.map((r) => {
    const gap = r.recommendedP - scheduleMean(r);
    return r.confidence >= P_MODEL_MIN_CONFIDENCE && Math.abs(gap) > P_GRID_STEP ? Math.sign(gap) : 0;
  });
  if (sides[0] === 0 || sides[0] !== sides[1]) return null;
  const side = sides[0];
  // The cross-check may abstain (null) or agree; preferring the other side of the schedule's p vetoes.
  if (recent.some((r) => r.crossCheckBestP !== null && Math.sign(r.crossCheckBestP - scheduleMean(r)) === -side)) return null;
  const latest = recent[1];
  const target = latest.recommendedP;
  const proposal = scheduleTowards(o, target, latest.horizonSteps, `advisor: mode model at steps ${recent[0].step} and ${latest.step}`);
  if (!proposal) return null;
  const atSchedule = curveAt(latest, scheduleMean(latest));
  const atTarget = curveAt(latest, target);
  const slopes = latest.layers.map((l) => l.curvatureVsSigma.slope);
  const evidence: Evidence[] = [
    ...recent.map((r) => ({ name: 'p recommended by the mode model', value: r.recommendedP, step: r.step, note: `the schedule's p over the next ${r.horizonSteps} steps: ${fmt(r.scheduleP.start)} → ${fmt(r.scheduleP.end)}` })),
    ...recent.map((r) => ({ name: 'mode model bootstrap confidence', value: round(r.confidence), threshold: P_MODEL_MIN_CONFIDENCE, comparison: '>' as const, step: r.step })),
    { name: "|recommended p − the schedule's mean p over the horizon|", value: round(Math.abs(target - scheduleMean(latest))), threshold: P_GRID_STEP, comparison: '>', step: latest.step },
    { name: `expected loss after the horizon at the schedule's p (grid p = ${atSchedule.p})`, value: atSchedule.loss, step: latest.step, note: `10–90% band ${atSchedule.low.toPrecision(3)}–${atSchedule.high.toPrecision(3)}` },
    { name: `expected loss after the horizon at the recommended p = ${atTarget.p}`, value: atTarget.loss, step: latest.step, note: `10–90% band ${atTarget.low.toPrecision(3)}–${atTarget.high.toPrecision(3)}` },
    ...recent.filter((r) => r.crossCheckBestP !== null).map((r) => ({ name: 'cross-check (independent-batch one-step score) best p', value: r.crossCheckBestP!, step: r.step, note: 'not on the other side of the schedule\'s p' })),
    { name: 'ln h vs ln σ slope (median over layers)', value: round(median(slopes)), step: latest.step, note: 'GGᵀ ≈ αH predicts 2' },
  ];
  return {
    rule: 'p_model',
    target: 'p',
    title: `${proposal.description}: the mode model recommends p = ${fmt(target)} twice`.slice(0, 300),
    change: proposal.change,
    evidence,
    // The weaker of the two records, capped below auto (P_MODEL_CONFIDENCE_CAP, docs/algorithms.md §10).
    confidence: Math.min(P_MODEL_CONFIDENCE_CAP, ...recent.map((r) => r.confidence)),
    expectedEffect: `a lower expected loss after ${latest.horizonSteps} steps per the mode model: ${atTarget.loss.toPrecision(3)} at p = ${atTarget.p} against ${atSchedule.loss.toPrecision(3)} at the schedule's p`,
  };
}

/** A stalled validation loss away from the task's floor: the improvement over the last evaluations, or null. */
function stall(o: Observations): { improvement: number; step: number } | null {
  if (o.evals.length < PLATEAU_EVALS) return null;
  const window = o.evals.slice(-PLATEAU_EVALS);
  const first = window[0].valLoss;
  const last = window[window.length - 1].valLoss;
  const improvement = (first - last) / Math.abs(first);
  if (!(improvement < PLATEAU_IMPROVEMENT)) return null;
  const floor = o.run?.lossFloor;
  if (floor !== null && floor !== undefined && last - floor < 0.05 * Math.max(Math.abs(floor), 1e-3)) return null; // at the floor: done, not stuck
  return { improvement, step: window[window.length - 1].step };
}

/** The latest whole-model B_simple within maxAge, beside the run's training batch size. */
function noiseScale(o: Observations, s: RuleSettings): { bSimple: number; batchSize: number; step: number } | null {
  const n = o.noiseScale;
  if (!n || o.step - n.step > s.maxAge) return null;
  return { bSimple: n.bSimple, batchSize: o.run?.batchSize ?? n.batchSize, step: n.step };
}

const stallEvidence = (st: { improvement: number; step: number }): Evidence => ({
  name: `validation loss improvement over the last ${PLATEAU_EVALS} evaluations`, value: round(st.improvement), threshold: PLATEAU_IMPROVEMENT, comparison: '<', step: st.step,
});

/**
 * Step-bound plateau: the loss has stalled, steps are far below the quadratic optimum (η/η* < 0.25 on the last
 * two probes) and the batch already averages out the noise (B_simple ≤ the batch size): a larger lr is
 * supported by the curvature. Without a noise measurement the two kinds of plateau cannot be told apart: quiet.
 */
export function plateauRule(o: Observations, s: RuleSettings): Proposal | null {
  const st = o.lr === null ? null : stall(o);
  const noise = noiseScale(o, s);
  if (!st || !noise || !(noise.bSimple <= noise.batchSize)) return null;
  const recent = o.updateCurvature.filter((c) => o.step - c.step <= s.maxAge && c.etaStar !== null && c.etaStar > 0).slice(-2);
  if (recent.length < 2) return null;
  const ratios = recent.map((c) => c.etaActual / c.etaStar!);
  if (!ratios.every((r) => r < ETA_RATIO_TIMID)) return null;
  const lr = o.lr! * PLATEAU_LR_UP;
  return {
    rule: 'plateau',
    target: 'lr',
    title: `Raise the learning rate (${fmt(o.lr!)} → ${fmt(lr)}): the loss has stalled and steps are far below the quadratic optimum`,
    change: { kind: 'set_lr', lr, reason: 'advisor: plateau with timid steps' },
    evidence: [
      stallEvidence(st),
      ...recent.map((c, i) => ({ name: 'η_actual/η*', value: round(ratios[i]), threshold: ETA_RATIO_TIMID, comparison: '<' as const, step: c.step })),
      { name: 'B_simple (whole model, examples)', value: round(noise.bSimple), threshold: noise.batchSize, comparison: '<', step: noise.step, note: `the batch (${noise.batchSize}) already averages out the noise: the plateau is the step's` },
    ],
    confidence: 0.35,
    expectedEffect: 'larger steps along directions where the quadratic model says a step this size is still far from overshooting',
  };
}

/**
 * Noise-bound plateau: the loss has stalled and B_simple is more than NOISE_BOUND_FACTOR × the batch size,
 * whatever η/η*: each step's direction is mostly noise, so a smaller lr averages it over more steps. A larger
 * batch (toward B_simple) would do the same without slowing the step, but a suggestion can only set lr or p,
 * so the title and expected effect say it with the number.
 */
export function plateauNoiseRule(o: Observations, s: RuleSettings): Proposal | null {
  const st = o.lr === null ? null : stall(o);
  const noise = noiseScale(o, s);
  if (!st || !noise || !(noise.bSimple > NOISE_BOUND_FACTOR * noise.batchSize)) return null;
  const lr = o.lr! * PLATEAU_LR_DOWN;
  const b = Math.round(noise.bSimple);
  return {
    rule: 'plateau_noise',
    target: 'lr',
    title: `Lower the learning rate (${fmt(o.lr!)} → ${fmt(lr)}): the loss has stalled at the gradient-noise level (B_simple ≈ ${b} examples, batch ${noise.batchSize}); a batch nearer ${b} would help too`,
    change: { kind: 'set_lr', lr, reason: 'advisor: plateau at the noise level' },
    evidence: [
      stallEvidence(st),
      { name: 'B_simple (whole model, examples)', value: round(noise.bSimple), threshold: NOISE_BOUND_FACTOR * noise.batchSize, comparison: '>', step: noise.step, note: `${NOISE_BOUND_FACTOR} × the batch size ${noise.batchSize}: a step's gradient is mostly noise` },
    ],
    confidence: 0.35,
    expectedEffect: `less noise per step, so the loss can settle below the level the noise holds it at; raising the batch size toward B_simple ≈ ${b} (now ${noise.batchSize}) would cut the noise without slowing progress per step`,
  };
}

/** In order: the first rule to propose for a target wins (advisor.ts). */
export const RULES: ((o: Observations, s: RuleSettings) => Proposal | null)[] = [instabilityRule, pModelRule, keepPPositiveRule, movePNegativeRule, plateauRule, plateauNoiseRule];

function fmt(x: number): string {
  return Number(x.toPrecision(3)).toString();
}

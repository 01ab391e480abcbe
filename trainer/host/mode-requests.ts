/**
 * The mode probe of a PyTorch run (docs/algorithms.md §10.6, docs/python.md §3): every `advisor.probeEvery`
 * steps the host asks the Python process to measure singular directions (`measure`, what
 * `modeDirections`), checks the answer and runs the mode model itself, so the rules and the model run once,
 * in Node, as for a run of the built-in trainer; the `p_model` record is built by the same code
 * (trainer/advisor/p-model-record.ts). Python measures only: σ, curvature, the microbatch components, and
 * the cross-check's products gᵀd_p and dᵀHd_p, which the host scores.
 *
 * When it is asked: a step record whose p is a number (only an optimizer with a p can have a p model),
 * the advisor on, one request at a time. The layers take turns under the same cap on curvature products as
 * the TS probe (`planLayers`), and a layer measured at the previous probe is reused as there. A refusal
 * (no probe or noise_probe, not DynMuon `exact`) is one warning alert for the run, and no record; a
 * malformed or unusable answer is an alert and no record.
 */
import type { LogRecord, NewLogRecord } from '../../common/protocol.js';
import { gainBoundedDamping } from '../../common/shaping.js';
import type { AdvisorMode } from '../advisor/advisor.js';
import { CROSS_CHECK_CANDIDATES, DEFAULT_PROBE_DIRECTIONS, DEFAULT_PROBE_MAX_HVPS, DEFAULT_PROBE_MICROBATCHES, planLayers, scoreCrossCheck, type LayerModes } from '../advisor/mode-probe.js';
import { fitModesForRecord, pModelRecord } from '../advisor/p-model-record.js';
import { validateModeDirections, type HostMessage, type MeasureParams, type ModeDirectionsResult } from './channel-messages.js';

export interface ModeRequestSettings {
  mode: AdvisorMode;
  /** Steps between probes; 0: never. */
  probeEvery: number;
  probeDirections?: number;
  probeMicrobatches?: number;
  probeMaxHvps?: number;
  /**
   * The diagnostics budget the probe shares (the run config's `diagnostics`), as in the TS runner: with
   * `adaptive` on, a due probe is asked for only if its last cost fits in what `budgetPct` of training time
   * has left after Python's diagnostics (its last `diagnostics_cost` overhead) and the earlier probes.
   */
  budget?: { adaptive: boolean; budgetPct: number };
}

export interface ModeRequestDeps {
  /** Sends to the connected Python process; false when none is connected. */
  send: (message: HostMessage) => boolean;
  append: (record: NewLogRecord) => LogRecord;
  /** The steps Python has completed (where host alerts are logged). */
  step: () => number;
  settings: ModeRequestSettings;
}

/** What became of a `measured` message: unknown id, or known and (maybe) the first thing wrong with it. */
export type MeasuredOutcome = { known: false } | { known: true; issue?: { path: string; message: string } };

const round4 = (x: number) => Number(x.toFixed(4));

export class ModeRequests {
  private matrixLayers: string[] = [];
  /** The p of Python's last step (null: its optimizer has none). */
  private lastP: number | null = null;
  private pending: { id: string; done: number } | null = null;
  private count = 0;
  private cursor = 0;
  private readonly layerModes = new Map<string, LayerModes>();
  private trainMs = 0;
  private probeMs = 0;
  private lastProbeMs = 0;
  /** watch's own time (its diagnostics and hooks), percent of training time (its last `diagnostics_cost`). */
  private diagnosticsPct = 0;
  private refusalLogged = false;

  constructor(private readonly deps: ModeRequestDeps) {}

  /** Follows the log (read only): the matrix layers from run_started, whether steps have a p, training time. */
  observe(r: LogRecord): void {
    if (r.kind === 'run_started') this.matrixLayers = r.params.filter((p) => p.route === 'matrix').map((p) => p.name);
    else if (r.kind === 'step') {
      this.lastP = r.p;
      this.trainMs += r.stepMs;
    } else if (r.kind === 'diagnostics_cost') this.diagnosticsPct = r.overheadPct;
  }

  /** After Python's step record for `step`: asks for a measurement when one is due. */
  afterStep(step: number): void {
    const s = this.deps.settings;
    const done = step + 1;
    if (s.mode === 'off' || s.probeEvery <= 0 || done % s.probeEvery !== 0 || this.lastP === null) return;
    // An answer that never came (a process that went away mid-measure) does not block the next probe.
    if (this.pending && done - this.pending.done < s.probeEvery) return;
    if (!this.withinBudget()) return;
    const k = s.probeDirections ?? DEFAULT_PROBE_DIRECTIONS;
    // As the TS probe: the p in force is always a cross-check candidate, so the comparison is against what the run does now.
    const crossCheck = [...new Set([...CROSS_CHECK_CANDIDATES, round4(this.lastP)])].sort((a, b) => a - b);
    const params: MeasureParams = { k, microbatches: s.probeMicrobatches ?? DEFAULT_PROBE_MICROBATCHES, horizonSteps: s.probeEvery, crossCheck };
    if (this.matrixLayers.length > 0) {
      const plan = planLayers(this.matrixLayers.length, k, s.probeMaxHvps ?? DEFAULT_PROBE_MAX_HVPS, this.cursor);
      this.cursor = plan.next;
      params.layers = plan.indices.map((i) => this.matrixLayers[i]);
    }
    const id = `host-measure-${++this.count}`;
    if (this.deps.send({ type: 'measure', id, what: 'modeDirections', params })) this.pending = { id, done };
  }

  /** As the TS runner's: the first probe always runs; later ones when the last one's cost fits what the budget has left. */
  private withinBudget(): boolean {
    const b = this.deps.settings.budget;
    if (!b?.adaptive || this.probeMs === 0) return true;
    const train = Math.max(this.trainMs, 1e-9);
    return this.diagnosticsPct + (100 * (this.probeMs + this.lastProbeMs)) / train <= b.budgetPct;
  }

  /** The connection dropped: nothing waits for an answer any more. */
  disconnected(): void {
    this.pending = null;
  }

  /** Python refused measure `id`: false when no measure of that id is waiting. */
  refused(id: string, code: string, message: string): boolean {
    if (this.pending?.id !== id) return false;
    this.pending = null;
    if (!this.refusalLogged) {
      this.refusalLogged = true;
      this.alert(`the Python process does not measure for the mode model (${code}: ${message}); this run gets no p_model records, the advisor's other rules work as before`, 'MEASURE_REFUSED');
    }
    return true;
  }

  /** Python's answer to measure `id`: checked, the mode model run, the `p_model` record logged (or an alert). */
  measured(id: string, result: unknown): MeasuredOutcome {
    if (this.pending?.id !== id) return { known: false };
    this.pending = null;
    const checked = validateModeDirections(result);
    if (!checked.ok) {
      const issue = { path: checked.issues[0].path, message: checked.issues.map((i) => `${i.path}: ${i.message}`).join('; ') };
      this.alert(`a modeDirections measurement from the Python process was refused (no p_model recorded): ${issue.message}`);
      return { known: true, issue };
    }
    const bad = rankIssue(checked.value);
    if (bad) {
      this.alert(`a modeDirections measurement from the Python process was refused (no p_model recorded): ${bad.message}`);
      return { known: true, issue: bad };
    }
    this.record(checked.value);
    return { known: true };
  }

  private record(m: ModeDirectionsResult): void {
    const s = this.deps.settings;
    this.probeMs += m.costMs;
    this.lastProbeMs = m.costMs;
    for (const l of m.layers) {
      this.layerModes.set(l.layer, { layer: l.layer, rows: l.rows, cols: l.cols, scale: l.scale, step: m.step, rankCount: Math.min(l.rows, l.cols), directions: l.directions });
    }
    // As the TS probe: a layer not measured this time is used when its last measurement is one probe old at most.
    const modes = [...this.layerModes.values()].filter((l) => l.step <= m.step && m.step - l.step <= s.probeEvery);
    const done = m.step + 1;
    const currentP = round4(m.currentP);
    const ctx = {
      lrs: new Array<number>(m.horizonSteps).fill(m.lr),
      currentP,
      stepsTaken: done,
      normalisation: m.normalization,
      // One ε for the model's whole grid: the one the run applies at the p in force.
      damping: gainBoundedDamping(currentP, m.damping, m.maxGain),
      microbatchSize: m.microbatchSize,
      microbatches: m.microbatches,
      batchSize: m.batchSize,
    };
    let fitted: ReturnType<typeof fitModesForRecord>;
    try {
      fitted = fitModesForRecord(m.step, modes, ctx);
    } catch (e) {
      return this.alert(`mode probe at step ${m.step}: the mode model failed on Python's measurement: ${String((e as Error)?.message ?? e)}; no probe recorded`, 'PROBE_FAILED');
    }
    if (!fitted.ok) return this.alert(fitted.message, fitted.code);
    // Python's products, scored here as the TS probe scores its own (an older Python that sends none: no cross-check).
    const check = scoreCrossCheck(m.crossCheck ?? []);
    const record = pModelRecord({
      step: m.step,
      currentP,
      scheduleP: m.scheduleP,
      horizonSteps: m.horizonSteps,
      layers: fitted.layers,
      recommendation: fitted.recommendation,
      crossCheck: check.points,
      crossCheckBestP: check.bestP,
      microbatches: m.microbatches,
      microbatchSize: m.microbatchSize,
      costMs: m.costMs,
      overheadPct: (100 * this.probeMs) / Math.max(this.trainMs, 1e-9),
    });
    try {
      this.deps.append(record);
    } catch (e) {
      this.alert(`mode probe at step ${m.step}: the p_model record failed the log's validation: ${String((e as Error)?.message ?? e)}`, 'PROBE_FAILED');
    }
  }

  private alert(message: string, code = 'BAD_MEASUREMENT'): void {
    this.deps.append({ kind: 'alert', step: this.deps.step(), level: 'warning', code, message: message.length > 2000 ? `${message.slice(0, 1999)}…` : message });
  }
}

/** Ranks inside the spectrum and distinct within a layer: what the schema cannot say. */
function rankIssue(m: ModeDirectionsResult): { path: string; message: string } | null {
  for (const [i, l] of m.layers.entries()) {
    const r = Math.min(l.rows, l.cols);
    const seen = new Set<number>();
    for (const [j, d] of l.directions.entries()) {
      const path = `/result/layers/${i}/directions/${j}/rank`;
      if (d.rank >= r) return { path, message: `${path}: rank ${d.rank} is outside ${l.layer}'s spectrum of ${r}` };
      if (seen.has(d.rank)) return { path, message: `${path}: rank ${d.rank} appears twice in ${l.layer}` };
      seen.add(d.rank);
    }
  }
  return null;
}

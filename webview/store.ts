/**
 * The dashboard's memory of every run it shows: columnar typed arrays per scalar (x = step), per-layer
 * series, the latest spectra per layer and a thinned history of them for the heatmap. It is fed only by
 * `ToDashboard` messages, keeps the first copy of every seq (hosts may resend history), and stays within
 * fixed bounds however long a run is: series halve themselves keeping min and max, spectra history thins
 * to every other column, and lists keep their latest entries.
 */
import type { RunDescriptor, ToDashboard } from '../common/dashboard-messages.js';
import type { AdvisorRule, LayerStats, LogRecord, RecordOf, RunState } from '../common/protocol.js';
import { compactMinMax } from './downsample.js';

export type ConnectionState = Extract<ToDashboard, { type: 'connection' }>['state'];
export type Reply = Extract<ToDashboard, { type: 'reply' }>['reply'];
export type ControlRecord = RecordOf<'control'>;
export type AlertRecord = RecordOf<'alert'>;
export type RunStarted = RecordOf<'run_started'>;
export type DirectionCurvature = NonNullable<RecordOf<'curvature'>['directions']>;
export type SuggestionRecord = RecordOf<'suggestion'>;
export type SuggestionOutcomeRecord = RecordOf<'suggestion_outcome'>;
export type ProbeRecord = RecordOf<'p_probe'>;
export type PModelRecord = RecordOf<'p_model'>;
export type RaceRecord = RecordOf<'race'>;

/** How this run's races of one rule's suggestions went (every race that arrived, not only the kept ones). */
export interface RaceTally {
  suggestedWon: number;
  baselineWon: number;
  ties: number;
  total: number;
}

/** A suggestion and, once something happened to it, its outcome. */
export interface SuggestionEntry {
  suggestion: SuggestionRecord;
  outcome: SuggestionOutcomeRecord | null;
  /** Fork-and-race results for this suggestion, oldest first. */
  races: RaceRecord[];
}

/** Points per scalar series before it halves itself; a per-step scalar over 10⁵ steps still fits. */
export const SERIES_CAP = 1 << 16;
/** Points per per-layer series (diagnostics come every K steps, and there may be hundreds of layers). */
export const LAYER_SERIES_CAP = 2048;
/** Spectra kept per layer for the heatmap. */
export const SPECTRA_HISTORY_CAP = 128;
const CONTROLS_CAP = 1000;
const ALERTS_CAP = 200;
const SUGGESTIONS_CAP = 500;
const PROBES_CAP = 200;
const P_MODELS_CAP = 200;
const RACES_CAP = 500;
const RACES_PER_SUGGESTION_CAP = 20;

/** A growable (x, y) column pair with a fixed upper bound, halved by min/max compaction when reached. */
export class Series {
  x: Float64Array;
  y: Float64Array;
  length = 0;

  constructor(readonly cap = SERIES_CAP, initial = 64) {
    this.x = new Float64Array(Math.min(initial, cap));
    this.y = new Float64Array(this.x.length);
  }

  push(x: number, y: number): void {
    if (this.length === this.x.length) {
      if (this.length >= this.cap) this.length = compactMinMax(this.x, this.y, this.length);
      else {
        const size = Math.min(this.cap, this.x.length * 2);
        const nx = new Float64Array(size);
        const ny = new Float64Array(size);
        nx.set(this.x);
        ny.set(this.y);
        this.x = nx;
        this.y = ny;
      }
    }
    this.x[this.length] = x;
    this.y[this.length++] = y;
  }

  get last(): number {
    return this.length ? this.y[this.length - 1] : NaN;
  }

  /** Bytes held, for the memory bound's tests and the benchmark. */
  get bytes(): number {
    return this.x.byteLength + this.y.byteLength;
  }
}

export interface SpectraColumn {
  step: number;
  exact: boolean;
  G: Float32Array;
  M: Float32Array;
  O: Float32Array;
  W: Float32Array;
}
export const MATRICES = ['G', 'M', 'O', 'W'] as const;
export type MatrixName = (typeof MATRICES)[number];

/**
 * Spectra over time for one layer, at most `cap` columns spread over the whole run: when full, every
 * other column is dropped and from then on only every `stride`-th arriving spectrum is kept.
 */
export class SpectraHistory {
  readonly columns: SpectraColumn[] = [];
  private stride = 1;
  private arrivals = 0;

  constructor(readonly cap = SPECTRA_HISTORY_CAP) {}

  push(c: SpectraColumn): void {
    if (this.arrivals++ % this.stride !== 0) return;
    if (this.columns.length >= this.cap) {
      const kept = this.columns.filter((_, i) => i % 2 === 0);
      this.columns.splice(0, this.columns.length, ...kept);
      this.stride *= 2;
    }
    this.columns.push(c);
  }
}

export const LAYER_METRICS = [
  'stableRank',
  'effectiveRank',
  'updateRms',
  'kappa',
  'noiseScale',
  'updateWeightRatio',
  'p',
  // Muon's own norms (layer_stats fields of the same names; `update…Rank` are ΔW's, `oOpNorm` is ‖O‖_op).
  'updateRmsToRms',
  'weightRmsToRms',
  'updateWeightOpRatio',
  'nuclearAlignment',
  'oOpNorm',
  'nsPolarError',
  'nsNearOne',
  'updateCosine',
  // ln κ against ln σ along the probed singular directions: 2 when GGᵀ ≈ αH (curvature records).
  'curvatureSlope',
  'updateStableRank',
  'updateEffectiveRank',
] as const;
export type LayerMetric = (typeof LAYER_METRICS)[number];

export class LayerHistory {
  stats: LayerStats | null = null;
  readonly series: Record<LayerMetric, Series>;
  latestSpectra: SpectraColumn | null = null;
  readonly spectra = new SpectraHistory();
  directions: DirectionCurvature | null = null;
  directionsStep = -1;
  snrTop: number[] | null = null;
  snrBottom: number[] | null = null;

  constructor(readonly name: string) {
    this.series = Object.fromEntries(LAYER_METRICS.map((m) => [m, new Series(LAYER_SERIES_CAP, 16)])) as Record<LayerMetric, Series>;
  }
}

const f32 = (a: readonly number[]): Float32Array => Float32Array.from(a);

export class RunStore {
  started: RunStarted | null = null;
  lastSeq = 0;
  /** Seqs that arrived after a jump (seq > lastSeq + 1): 0 when the history came through whole. */
  gaps = 0;
  records = 0;
  /** Bumped on every accepted record; views redraw only when it moved. */
  version = 0;
  state: RunState | null = null;
  stateReason = '';
  /** The last completed step (−1 before the first). */
  step = -1;
  connection: ConnectionState = 'connecting';
  connectionDetail = '';

  readonly loss = new Series();
  readonly lr = new Series();
  readonly p = new Series();
  readonly stepMs = new Series();
  /**
   * A data-parallel run's ranks at its last step record that named them (PyTorch under torch.distributed):
   * the world size and each rank's step time; null for one process. The slowest rank sets the pace.
   */
  ranks: { step: number; worldSize: number; rankStepMs: number[] } | null = null;
  readonly valLoss = new Series();
  readonly model = {
    kappaUpdate: new Series(),
    /** 2·gᵀd/(η‖d‖²), the stability edge for κ along the update. */
    edgeAlongUpdate: new Series(),
    /** Power iteration (older logs). */
    topEigenvalue: new Series(),
    /** Lanczos: the three largest Ritz values, the most negative, and the values not converged. */
    eigen1: new Series(),
    eigen2: new Series(),
    eigen3: new Series(),
    eigenBottom: new Series(),
    eigenNotConverged: new Series(),
    criticalSharpness: new Series(),
    /** η/η* with η* measured before the step. */
    etaRatio: new Series(),
    overshootFraction: new Series(),
    /** B_simple over the window of steps (older logs: an EMA over measurements), and each measurement's own. */
    noiseScale: new Series(),
    noiseScaleLatest: new Series(),
    batchSize: new Series(),
    /** The probed layer's SNR along its top singular direction with its 95% bounds, and along the bottom one. */
    snrTop: new Series(),
    snrTopLow: new Series(),
    snrTopHigh: new Series(),
    snrBottom: new Series(),
    overheadPct: new Series(),
  };
  /** What the SNRs are of (logs from before it was recorded measured a microbatch's). */
  snrOf: NonNullable<RecordOf<'noise'>['snrOf']> = 'microbatch';
  /** Whether a whole-model noise record from held-out microbatches has come (preferred to the ranks' estimate). */
  noiseFromMicrobatches = false;
  costsMs: Record<string, number> = {};
  diagnosticsEvery = 0;
  readonly layers = new Map<string, LayerHistory>();
  readonly controls: ControlRecord[] = [];
  readonly alerts: AlertRecord[] = [];
  lastCheckpoint: RecordOf<'checkpoint'> | null = null;
  /** The advisor's suggestions in arrival order, each with its outcome once there is one. */
  readonly suggestions: SuggestionEntry[] = [];
  private readonly suggestionIndex = new Map<string, SuggestionEntry>();
  readonly probes: ProbeRecord[] = [];
  /** The mode model's p records (the latest is what the Suggestions view draws). */
  readonly pModels: PModelRecord[] = [];
  readonly races: RaceRecord[] = [];
  /** Per rule, counted as races arrive, so the tally stays whole when the list above drops old ones. */
  private readonly raceTallies = new Map<AdvisorRule, RaceTally>();

  constructor(readonly runId: string) {}

  /** How the races of `rule`'s suggestions went in this run; total 0 when none was raced. */
  raceTally(rule: AdvisorRule): RaceTally {
    return { ...(this.raceTallies.get(rule) ?? { suggestedWon: 0, baselineWon: 0, ties: 0, total: 0 }) };
  }

  /** Suggestions nobody has acted on yet. */
  pendingSuggestions(): SuggestionEntry[] {
    return this.suggestions.filter((e) => e.outcome === null);
  }

  layer(name: string): LayerHistory {
    let l = this.layers.get(name);
    if (!l) this.layers.set(name, (l = new LayerHistory(name)));
    return l;
  }

  /** Applies records in seq order, keeping the first copy of each seq. Returns how many were new. */
  apply(records: readonly LogRecord[]): number {
    let added = 0;
    for (const r of records) {
      if (r.seq <= this.lastSeq) continue;
      if (r.seq !== this.lastSeq + 1 && this.lastSeq !== 0) this.gaps++;
      this.lastSeq = r.seq;
      this.records++;
      added++;
      this.applyOne(r);
    }
    if (added) this.version++;
    return added;
  }

  private applyOne(r: LogRecord): void {
    switch (r.kind) {
      case 'run_started':
        this.started = r;
        this.state = 'running';
        return;
      case 'step':
        this.step = r.step;
        this.loss.push(r.step, r.loss);
        this.lr.push(r.step, r.lr);
        this.p.push(r.step, r.p ?? NaN);
        this.stepMs.push(r.step, r.stepMs);
        if (r.worldSize !== undefined && r.rankStepMs !== undefined) this.ranks = { step: r.step, worldSize: r.worldSize, rankStepMs: r.rankStepMs };
        return;
      case 'rank_times':
        this.ranks = { step: r.step, worldSize: r.worldSize, rankStepMs: r.rankStepMs };
        return;
      case 'eval':
        this.valLoss.push(r.step, r.valLoss);
        return;
      case 'layer_stats':
        for (const s of r.layers) {
          const l = this.layer(s.name);
          l.stats = s;
          l.series.stableRank.push(r.step, s.G.stableRank);
          l.series.effectiveRank.push(r.step, s.G.effectiveRank);
          l.series.updateRms.push(r.step, s.updateRms);
          l.series.updateWeightRatio.push(r.step, s.updateWeightRatio);
          l.series.p.push(r.step, s.p);
          l.series.oOpNorm.push(r.step, s.O.sigmaMax);
          // Absent from logs written before they were measured, and some only at some rounds: no point then.
          const optional: [LayerMetric, number | undefined][] = [
            ['updateRmsToRms', s.updateRmsToRms],
            ['weightRmsToRms', s.weightRmsToRms],
            ['updateWeightOpRatio', s.updateWeightOpRatio],
            ['nuclearAlignment', s.nuclearAlignment],
            ['nsPolarError', s.nsPolarError],
            ['nsNearOne', s.nsNearOne],
            ['updateCosine', s.updateCosine],
            ['updateStableRank', s.deltaW?.stableRank],
            ['updateEffectiveRank', s.deltaW?.effectiveRank],
          ];
          for (const [metric, value] of optional) if (value !== undefined) l.series[metric].push(r.step, value);
        }
        return;
      case 'spectra': {
        const column: SpectraColumn = { step: r.step, exact: r.exact, G: f32(r.G), M: f32(r.M), O: f32(r.O), W: f32(r.W) };
        const l = this.layer(r.layer);
        l.latestSpectra = column;
        l.spectra.push(column);
        return;
      }
      case 'curvature':
        if (r.layer === null) {
          if (r.kappaUpdate !== undefined) this.model.kappaUpdate.push(r.step, r.kappaUpdate);
          if (r.edgeAlongUpdate !== undefined) this.model.edgeAlongUpdate.push(r.step, r.edgeAlongUpdate);
          if (r.topEigenvalue !== undefined) this.model.topEigenvalue.push(r.step, r.topEigenvalue);
          if (r.eigenvalues) {
            const [a, b, c] = r.eigenvalues.top;
            const ritz = [[this.model.eigen1, a], [this.model.eigen2, b], [this.model.eigen3, c], [this.model.eigenBottom, r.eigenvalues.bottom]] as const;
            for (const [series, pair] of ritz) if (pair) series.push(r.step, pair.value);
            // One marker per step: the largest value that did not converge.
            const loose = [...r.eigenvalues.top, r.eigenvalues.bottom].find((pair) => !pair.converged);
            if (loose) this.model.eigenNotConverged.push(r.step, loose.value);
          }
          if (r.criticalSharpness !== undefined) this.model.criticalSharpness.push(r.step, r.criticalSharpness);
          if (r.etaStarBefore != null) this.model.etaRatio.push(r.step, r.etaActual / r.etaStarBefore);
          if (r.overshootFraction !== undefined) this.model.overshootFraction.push(r.step, r.overshootFraction);
        } else {
          const l = this.layer(r.layer);
          if (r.kappaUpdate !== undefined) l.series.kappa.push(r.step, r.kappaUpdate);
          if (r.directions) {
            l.directions = r.directions;
            l.directionsStep = r.step;
            if (r.directions.curvatureVsSigma) l.series.curvatureSlope.push(r.step, r.directions.curvatureVsSigma.slope);
          }
        }
        return;
      case 'noise':
        // A data-parallel run with a noise_probe logs two whole-model estimates (`estimator`); the series holds
        // one: the ranks' while there is no other, the microbatches' (which replaces it) once there is.
        if (r.estimator === 'ranks') {
          if (this.noiseFromMicrobatches) return;
        } else if (r.layer === null && !this.noiseFromMicrobatches) {
          this.noiseFromMicrobatches = true;
          this.model.noiseScale.length = this.model.noiseScaleLatest.length = this.model.batchSize.length = 0;
        }
        if (r.layer === null) {
          this.model.noiseScale.push(r.step, r.bSimple ?? NaN);
          if (r.bSimpleLatest !== undefined) this.model.noiseScaleLatest.push(r.step, r.bSimpleLatest ?? NaN);
          this.model.batchSize.push(r.step, r.batchSize);
        } else {
          const l = this.layer(r.layer);
          l.series.noiseScale.push(r.step, r.bSimple ?? NaN);
          if (r.snrTop) l.snrTop = r.snrTop;
          if (r.snrBottom) l.snrBottom = r.snrBottom;
          if (r.snrTop?.length) {
            this.snrOf = r.snrOf ?? 'microbatch';
            this.model.snrTop.push(r.step, r.snrTop[0]);
            this.model.snrTopLow.push(r.step, r.snrTopLow?.[0] ?? NaN);
            this.model.snrTopHigh.push(r.step, r.snrTopHigh?.[0] ?? NaN);
            this.model.snrBottom.push(r.step, r.snrBottom?.at(-1) ?? NaN);
          }
        }
        return;
      case 'diagnostics_cost':
        this.model.overheadPct.push(r.step, r.overheadPct);
        this.costsMs = r.costsMs;
        this.diagnosticsEvery = r.every;
        return;
      case 'control':
        this.controls.push(r);
        if (this.controls.length > CONTROLS_CAP) this.controls.shift();
        return;
      case 'state':
        this.state = r.state;
        this.stateReason = r.reason;
        return;
      case 'alert':
        this.alerts.push(r);
        if (this.alerts.length > ALERTS_CAP) this.alerts.shift();
        return;
      case 'checkpoint':
        this.lastCheckpoint = r;
        return;
      case 'suggestion': {
        const entry: SuggestionEntry = { suggestion: r, outcome: null, races: [] };
        this.suggestions.push(entry);
        this.suggestionIndex.set(r.id, entry);
        if (this.suggestions.length > SUGGESTIONS_CAP) this.suggestionIndex.delete(this.suggestions.shift()!.suggestion.id);
        return;
      }
      case 'suggestion_outcome': {
        const entry = this.suggestionIndex.get(r.id);
        if (entry) entry.outcome = r;
        return;
      }
      case 'p_probe':
        this.probes.push(r);
        if (this.probes.length > PROBES_CAP) this.probes.shift();
        return;
      case 'p_model':
        this.pModels.push(r);
        if (this.pModels.length > P_MODELS_CAP) this.pModels.shift();
        return;
      case 'race': {
        this.races.push(r);
        if (this.races.length > RACES_CAP) this.races.shift();
        const tally = this.raceTallies.get(r.rule) ?? { suggestedWon: 0, baselineWon: 0, ties: 0, total: 0 };
        if (r.winner === 'suggested') tally.suggestedWon++;
        else if (r.winner === 'baseline') tally.baselineWon++;
        else tally.ties++;
        tally.total++;
        this.raceTallies.set(r.rule, tally);
        // A race of a suggestion older than the kept ones still counts in the tally, just has no card.
        const entry = this.suggestionIndex.get(r.suggestionId);
        if (entry) {
          entry.races.push(r);
          if (entry.races.length > RACES_PER_SUGGESTION_CAP) entry.races.shift();
        }
        return;
      }
    }
  }

  /** Steps at which something changed the run (every control record): the markers on time charts. */
  markerSteps(): number[] {
    return this.controls.map((c) => c.step);
  }

  /** Bytes held in typed arrays (series and spectra), for the memory bound. */
  get bytes(): number {
    let b = 0;
    const add = (s: Series): void => void (b += s.bytes);
    [this.loss, this.lr, this.p, this.stepMs, this.valLoss, ...Object.values(this.model)].forEach(add);
    for (const l of this.layers.values()) {
      Object.values(l.series).forEach(add);
      for (const c of l.spectra.columns) b += c.G.byteLength + c.M.byteLength + c.O.byteLength + c.W.byteLength;
    }
    return b;
  }
}

type Listener = () => void;

/** All runs of this panel, in the host's order (the first is the focused run). */
export class Store {
  readonly runs = new Map<string, RunStore>();
  descriptors: RunDescriptor[] = [];
  version = 0;
  private readonly replyListeners = new Set<(runId: string, reply: Reply) => void>();
  private readonly changeListeners = new Set<Listener>();

  run(runId: string): RunStore {
    let r = this.runs.get(runId);
    if (!r) this.runs.set(runId, (r = new RunStore(runId)));
    return r;
  }

  get focused(): RunStore | null {
    const id = this.descriptors[0]?.runId;
    return id ? this.run(id) : null;
  }

  onReply(fn: (runId: string, reply: Reply) => void): void {
    this.replyListeners.add(fn);
  }

  onChange(fn: Listener): void {
    this.changeListeners.add(fn);
  }

  handle(msg: ToDashboard): void {
    switch (msg.type) {
      case 'runs':
        this.descriptors = msg.runs;
        for (const d of msg.runs) this.run(d.runId);
        break;
      case 'records':
        if (!this.run(msg.runId).apply(msg.records)) return;
        break;
      case 'connection': {
        const r = this.run(msg.runId);
        r.connection = msg.state;
        r.connectionDetail = msg.detail ?? '';
        r.version++;
        break;
      }
      case 'reply':
        for (const fn of this.replyListeners) fn(msg.runId, msg.reply);
        return;
    }
    this.version++;
    for (const fn of this.changeListeners) fn();
  }
}

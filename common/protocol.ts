/**
 * The wire protocol between the trainer and its clients (the extension host, the dashboard's browser
 * adapter): one definition of every message, its version, and a runtime validator. Schemas are TypeBox
 * (JSON Schema), so the static types below are derived from the same definitions the validator checks;
 * nothing else parses messages. What the dashboard and its host say to each other is in
 * dashboard-messages.ts, built from these records and commands.
 *
 * Every record of the run log (NDJSON, one `LogRecord` a line) is also what travels in `events`
 * messages: the log is the truth, and a client that reconnects with the last seq it saw loses nothing.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { Finite, Int, Str, validate, type ValidationIssue, type Validated } from './schema.js';
import { ScheduleSpecSchema } from './schedules.js';

export const PROTOCOL_VERSION = 1;

/** Frames larger than this are refused by the server (ws maxPayload) and by `parseClientMessage`. */
export const MAX_CLIENT_FRAME_BYTES = 64 * 1024;

const Reason = Type.Optional(Str(500));

// ---------- commands (client → trainer) ----------

const SetLrCommand = Type.Object({ kind: Type.Literal('set_lr'), lr: Finite({ exclusiveMinimum: 0, maximum: 10 }), reason: Reason }, { additionalProperties: false });
/** Replace the p schedule from `fromStep` (default: the next step) on. */
const SetScheduleCommand = Type.Object(
  { kind: Type.Literal('set_schedule'), schedule: ScheduleSpecSchema, fromStep: Type.Optional(Int({ minimum: 0 })), reason: Reason },
  { additionalProperties: false },
);
const SuggestionId = Type.String({ minLength: 1, maxLength: 64 });
/** The longest fork-and-race a command may ask for: each branch replays this many steps while the run waits. */
export const RACE_MAX_STEPS = 1000;

export const CommandSchema = Type.Union([
  Type.Object({ kind: Type.Literal('pause'), reason: Reason }, { additionalProperties: false }),
  Type.Object({ kind: Type.Literal('resume'), reason: Reason }, { additionalProperties: false }),
  Type.Object({ kind: Type.Literal('stop'), reason: Reason }, { additionalProperties: false }),
  /** Run exactly n steps, then pause again (only while paused). */
  Type.Object({ kind: Type.Literal('step'), n: Int({ minimum: 1, maximum: 100000 }), reason: Reason }, { additionalProperties: false }),
  SetLrCommand,
  SetScheduleCommand,
  Type.Object(
    {
      kind: Type.Literal('set_diagnostics'),
      every: Int({ minimum: 1, maximum: 1000000 }),
      adaptive: Type.Optional(Type.Boolean()),
      budgetPct: Type.Optional(Finite({ exclusiveMinimum: 0, maximum: 100 })),
      reason: Reason,
    },
    { additionalProperties: false },
  ),
  Type.Object({ kind: Type.Literal('checkpoint'), reason: Reason }, { additionalProperties: false }),
  /** Carry out one of the advisor's pending suggestions (its change, audited as coming from it). */
  Type.Object({ kind: Type.Literal('apply_suggestion'), id: SuggestionId, reason: Reason }, { additionalProperties: false }),
  Type.Object({ kind: Type.Literal('dismiss_suggestion'), id: SuggestionId, reason: Reason }, { additionalProperties: false }),
  /**
   * Fork-and-race a pending suggestion (only while paused): from the same state and on the same batches,
   * `steps` steps as the run is set now and `steps` steps with the suggestion applied, each scored on the
   * same held-out batches; then the state is put back exactly as it was and a `race` record is logged.
   */
  Type.Object({ kind: Type.Literal('race'), id: SuggestionId, steps: Int({ minimum: 1, maximum: RACE_MAX_STEPS }), reason: Reason }, { additionalProperties: false }),
]);
export type Command = Static<typeof CommandSchema>;

/** What a suggestion would change: exactly a `set_lr` or `set_schedule` command. */
export const SuggestedChangeSchema = Type.Union([SetLrCommand, SetScheduleCommand]);
export type SuggestedChange = Static<typeof SuggestedChangeSchema>;
export type CommandKind = Command['kind'];

// ---------- client → trainer messages ----------

export const ClientMessageSchema = Type.Union([
  /** Replay every record with seq > afterSeq, then stream live records (no gaps, no duplicates). */
  Type.Object({ type: Type.Literal('subscribe'), afterSeq: Int({ minimum: 0 }) }, { additionalProperties: false }),
  Type.Object(
    { type: Type.Literal('command'), id: Type.String({ minLength: 1, maxLength: 64 }), command: CommandSchema, source: Type.Optional(Str(64)) },
    { additionalProperties: false },
  ),
]);
export type ClientMessage = Static<typeof ClientMessageSchema>;

// ---------- run log records (trainer → everyone) ----------

const ProviderReportSchema = Type.Object({
  chosen: Str(),
  skipped: Type.Array(Type.Object({ name: Str(), reason: Str(1000) })),
});

export const RUN_STATES = ['running', 'paused', 'finished', 'stopped', 'crashed'] as const;
export const RunStateSchema = Type.Union(RUN_STATES.map((s) => Type.Literal(s)));
export type RunState = Static<typeof RunStateSchema>;

const SpectrumSummarySchema = Type.Object({
  sigmaMax: Finite(),
  stableRank: Finite(),
  effectiveRank: Finite(),
  nuclearRank: Finite(),
});
export type SpectrumSummary = Static<typeof SpectrumSummarySchema>;

/**
 * The singular values of NS(M) counted in `nsNearOne` as "brought near 1". Keller's quintic leaves
 * converged directions oscillating in [0.68, 1.20] (Polar Express's in [0.86, 1.14]), so the band holds
 * every direction the iteration has converged: after 5 steps of Keller's quintic a direction is in it from
 * σ/‖M‖_F ≈ 1.3e-3 up, while σ/‖M‖_F = 1e-3 maps to 0.47 and 1e-4 to 0.05.
 */
export const NS_NEAR_ONE_BAND: readonly [number, number] = [0.6, 1.4];

/** Which rank of a data-parallel run measured a record or a layer (the ranks share the diagnostics); absent for one process. */
const MeasuredByRank = Type.Optional(Int({ minimum: 0 }));

const LayerStatsSchema = Type.Object({
  name: Str(),
  rows: Int(),
  cols: Int(),
  rank: MeasuredByRank,
  p: Finite(),
  /** ‖M‖_F^p where it multiplies the step (DynMuon released / lrOnly), else 1. */
  normPowP: Finite(),
  method: Str(20),
  shapingRelError: Type.Optional(Finite()),
  updateRms: Finite(),
  updateRmsTheory: Finite(),
  updateWeightRatio: Finite(),
  alignment: Finite(),
  orthogonalityError: Finite(),
  G: SpectrumSummarySchema,
  M: SpectrumSummarySchema,
  O: SpectrumSummarySchema,
  W: SpectrumSummarySchema,
  // Muon's own norms (optional: absent from logs written before they were measured).
  /** Spectrum summary of ΔW, the change the step made to W (weight decay included); sigmaMax = ‖ΔW‖_op in W's units. */
  deltaW: Type.Optional(SpectrumSummarySchema),
  /** ‖ΔW‖_op·√(in/out): the step's RMS→RMS operator norm, in W's units. */
  updateRmsToRms: Type.Optional(Finite()),
  /** ‖W‖_op·√(in/out): the weight's RMS→RMS operator norm, in W's units. */
  weightRmsToRms: Type.Optional(Finite()),
  /** ‖ΔW‖_op/‖W‖_op, dimensionless (the same ratio in RMS→RMS norms). */
  updateWeightOpRatio: Type.Optional(Finite()),
  /** ⟨G, O⟩/‖G‖_*, dimensionless where O is (≤ ‖O‖_op = O.sigmaMax; equal when O is a multiple of G's polar factor). */
  nuclearAlignment: Type.Optional(Finite()),
  /** ‖NS(M) − polar(M)‖_F/‖polar(M)‖_F, dimensionless, NS as the run's Muon options set it (NS₅, Keller, by default); exact spectra only. */
  nsPolarError: Type.Optional(Finite()),
  /** How many singular values of NS(M) lie in NS_NEAR_ONE_BAND, [0.6, 1.4] (a count, of min(rows, cols)); exact spectra only. */
  nsNearOne: Type.Optional(Int({ minimum: 0 })),
  /** cos(O, O at the layer's previous measurement), dimensionless in [−1, 1]; absent at its first. */
  updateCosine: Type.Optional(Finite()),
  /** Steps between the two updates of updateCosine (1: consecutive steps). */
  updateCosineLag: Type.Optional(Int({ minimum: 1 })),
});
export type LayerStats = Static<typeof LayerStatsSchema>;

const DirectionCurvatureSchema = Type.Object({ index: Int(), sigma: Finite(), kappa: Finite(), snr: Type.Optional(Finite()) });
const RitzSchema = Type.Object({ value: Finite(), residual: Finite(), converged: Type.Boolean() });
/**
 * The overshoot fraction (steps with g_{t+1}ᵀd_t < 0 over a full window of 20) above which overshoot is
 * persistent: with pure-noise gradients the signs are coin flips and 15 or more of 20 happens 2% of the time.
 */
export const OVERSHOOT_FRACTION_PERSISTENT = 0.7;

const RecordBase = { seq: Int({ minimum: 1 }), t: Finite() };

/**
 * `p_probe` (the one-step probe) and `plateau` without a kind are what logs before the mode model hold;
 * new runs propose p changes as `p_model` and tell a noise-bound plateau from a step-bound one.
 */
export const ADVISOR_RULES = ['instability', 'keep_p_positive', 'move_p_negative', 'p_probe', 'p_model', 'plateau', 'plateau_noise'] as const;
export type AdvisorRule = (typeof ADVISOR_RULES)[number];
export const SUGGESTION_OUTCOMES = ['applied', 'dismissed', 'superseded', 'refused'] as const;
export type SuggestionOutcome = (typeof SUGGESTION_OUTCOMES)[number];

/** One measured value behind a suggestion, with the threshold it crossed. */
const EvidenceSchema = Type.Object({
  name: Str(100),
  value: Finite(),
  /** The threshold it was compared with, and how (`value > threshold` triggered). */
  threshold: Type.Optional(Finite()),
  comparison: Type.Optional(Type.Union([Type.Literal('>'), Type.Literal('<')])),
  /** Step of the measurement (it may be older than the suggestion). */
  step: Type.Optional(Int()),
  layer: Type.Optional(Str()),
  note: Type.Optional(Str(300)),
});
export type Evidence = Static<typeof EvidenceSchema>;

const ProbeCandidateSchema = Type.Object({
  p: Finite(),
  /** η·gᵀd − ½η²·dᵀHd on the held-out batch. */
  predictedDecrease: Finite(),
  gd: Finite(),
  dHd: Finite(),
});
export type ProbeCandidate = Static<typeof ProbeCandidateSchema>;

/** One measured singular direction u·vᵀ of a layer's momentum (docs/algorithms.md §10). */
const ModeDirectionSchema = Type.Object({
  /** Position in the momentum's spectrum, 0 = largest. */
  rank: Int({ minimum: 0 }),
  sigma: Finite(),
  /** (u·vᵀ)ᵀ H (u·vᵀ) on the held-out batch. */
  curvature: Finite(),
  /** Mean gradient component uᵀ G v over the held-out microbatches. */
  gradient: Finite(),
  /** Variance of one microbatch's component (the noise basis is the record's `microbatchSize`). */
  noiseVariance: Finite({ minimum: 0 }),
});
export type ModeDirection = Static<typeof ModeDirectionSchema>;

const LogLogFitSchema = Type.Object({ slope: Finite(), intercept: Finite(), r2: Finite() });

const ModeCurvePointSchema = Type.Object({
  p: Finite(),
  /** Expected Σ h·E[δ²] over the horizon, summed over the measured layers. */
  loss: Finite(),
  residual: Finite(),
  noise: Finite(),
  /** Bootstrap band (10th and 90th percentiles). */
  low: Finite(),
  high: Finite(),
});
export type ModeCurvePoint = Static<typeof ModeCurvePointSchema>;

const ModeLayerSchema = Type.Object({
  layer: Str(),
  rows: Int(),
  cols: Int(),
  directions: Type.Array(ModeDirectionSchema, { maxItems: 64 }),
  /** ln h against ln σ: GGᵀ ≈ αH predicts slope 2. */
  curvatureVsSigma: LogLogFitSchema,
  /** ln c against ln h: the noise law's exponent β. */
  noiseVsCurvature: LogLogFitSchema,
  /** This layer's own best p (the run's p is one for all layers; `recommendedP` is the joint one). */
  recommendedP: Finite(),
});

/** The scale-free one-step score (g_Aᵀd)(g_Bᵀd)/(dᵀHd) from two independent held-out halves, per candidate p. */
const CrossCheckSchema = Type.Object({ p: Finite(), score: Finite(), gdA: Finite(), gdB: Finite(), dHd: Finite() });
export type CrossCheckPoint = Static<typeof CrossCheckSchema>;

/** The outcome of a fork-and-race branch: the same steps from the same state, scored on held-out data. */
const RaceBranchSchema = Type.Object({
  /** Mean training loss over the branch's steps; null when the branch diverged. */
  trainLoss: Type.Union([Finite(), Type.Null()]),
  /** Held-out loss after the branch's last step; null when the branch diverged. */
  valLoss: Type.Union([Finite(), Type.Null()]),
  /** The step at which the loss became non-finite (the branch stopped there and lost the race). */
  divergedAtStep: Type.Optional(Int()),
  /** p at the branch's last step (null when the run has no p). */
  p: Type.Union([Finite(), Type.Null()]),
  lr: Finite(),
});

export const LogRecordSchema = Type.Union([
  Type.Object({
    ...RecordBase,
    kind: Type.Literal('run_started'),
    step: Int(),
    runId: Str(),
    protocol: Int(),
    config: Type.Unknown(),
    backend: ProviderReportSchema,
    kernels: ProviderReportSchema,
    totalSteps: Int(),
    task: Type.Object({ name: Str(), lossFloor: Type.Union([Finite(), Type.Null()]), lossFloorLabel: Str() }),
    params: Type.Array(Type.Object({ name: Str(), shape: Type.Array(Int()), route: Str(20) })),
    resumedFrom: Type.Optional(Str(4096)),
    /** Processes of a data-parallel run (PyTorch under torch.distributed); absent for one process. */
    worldSize: Type.Optional(Int({ minimum: 1 })),
  }),
  Type.Object({
    ...RecordBase,
    kind: Type.Literal('step'),
    step: Int(),
    loss: Finite(),
    lr: Finite(),
    p: Type.Union([Finite(), Type.Null()]),
    stepMs: Finite(),
    tokensPerS: Type.Optional(Finite()),
    /** Data parallel, logs written before `rank_times` (docs/protocol.md): the ranks and each one's step wall time (ms). */
    worldSize: Type.Optional(Int({ minimum: 1 })),
    rankStepMs: Type.Optional(Type.Array(Finite())),
  }),
  /** Data parallel (docs/python.md): each rank's wall time (ms) of step `step`, in rank order, written at the next step boundary. */
  Type.Object({
    ...RecordBase,
    kind: Type.Literal('rank_times'),
    step: Int(),
    worldSize: Int({ minimum: 2 }),
    rankStepMs: Type.Array(Finite({ minimum: 0 })),
  }),
  Type.Object({ ...RecordBase, kind: Type.Literal('eval'), step: Int(), valLoss: Finite() }),
  Type.Object({ ...RecordBase, kind: Type.Literal('layer_stats'), step: Int(), layers: Type.Array(LayerStatsSchema) }),
  /** Singular values (descending) of G, M, O and W for one layer; `exact` false means top-k only. */
  Type.Object({
    ...RecordBase,
    kind: Type.Literal('spectra'),
    step: Int(),
    layer: Str(),
    rank: MeasuredByRank,
    exact: Type.Boolean(),
    G: Type.Array(Finite()),
    M: Type.Array(Finite()),
    O: Type.Array(Finite()),
    W: Type.Array(Finite()),
  }),
  Type.Object({
    ...RecordBase,
    kind: Type.Literal('curvature'),
    step: Int(),
    /** null: the whole model. */
    layer: Type.Union([Str(), Type.Null()]),
    rank: MeasuredByRank,
    /** Data parallel with a probe of parts (docs/python.md): every one of these ranks measured its part of the probe's batch. */
    ranks: Type.Optional(Int({ minimum: 2 })),
    /**
     * κ_d = dᵀHd/‖d‖² along the applied update d (per unit lr); since the Muon-units correction measured at
     * θ_before on a held-out batch (absent when only other probes ran at this step).
     */
    kappaUpdate: Type.Optional(Finite()),
    etaActual: Finite(),
    /** Deprecated (older logs): gᵀd/dᵀHd at θ_after along the step just taken, null unless positive. */
    etaStar: Type.Optional(Type.Union([Finite(), Type.Null()])),
    /** Deprecated (older logs): gradient descent's 2/η_eff, not a stability test for Muon. */
    edgeReference: Type.Optional(Finite()),
    /** η* = gᵀd/dᵀHd at θ_before on a held-out batch, before the step; negative when d points uphill there; null when dᵀHd ≤ 0. */
    etaStarBefore: Type.Optional(Type.Union([Finite(), Type.Null()])),
    /** The edge along the update 2·gᵀd/(η‖d‖²) at θ_before: κ_d above it means η > 2η* (the step raises the loss). */
    edgeAlongUpdate: Type.Optional(Finite()),
    /** Fraction of the last `overshootSteps` steps with g_{t+1}ᵀd_t < 0 (whole model). */
    overshootFraction: Type.Optional(Finite()),
    overshootSteps: Type.Optional(Int()),
    /** The latest cos(g_{t+1}, d_t). */
    overshootCosine: Type.Optional(Finite()),
    /** Power-iteration estimate (older logs); newer records carry `eigenvalues`. */
    topEigenvalue: Type.Optional(Finite()),
    /** Lanczos Ritz values: the largest few (largest first) and the most negative, with residuals ‖Hy − λy‖. */
    eigenvalues: Type.Optional(
      Type.Object({
        top: Type.Array(RitzSchema),
        bottom: RitzSchema,
        /** converged: residual ≤ tol·max|λ|. */
        tol: Finite(),
        hvps: Int(),
      }),
    ),
    criticalSharpness: Type.Optional(Finite()),
    directions: Type.Optional(
      Type.Object({
        top: Type.Array(DirectionCurvatureSchema),
        bottom: Type.Array(DirectionCurvatureSchema),
        /**
         * ln κ against ln σ over those directions with κ > 0 (at least two distinct σ; absent otherwise): the
         * GGᵀ ≈ αH test, which predicts slope 2 (docs/algorithms.md §10.1).
         */
        curvatureVsSigma: Type.Optional(LogLogFitSchema),
      }),
    ),
  }),
  Type.Object({
    ...RecordBase,
    kind: Type.Literal('noise'),
    step: Int(),
    layer: Type.Union([Str(), Type.Null()]),
    /** B_simple = tr(Σ)/|G|² from the window's mean |G|² and tr(Σ) (older logs: an EMA over measurements). */
    bSimple: Type.Union([Finite(), Type.Null()]),
    batchSize: Int(),
    /** This measurement's own B_simple (null while its |G|² estimate ≤ 0). */
    bSimpleLatest: Type.Optional(Type.Union([Finite(), Type.Null()])),
    /** The window's mean unbiased |G|² and tr(Σ) estimates. */
    gradSq: Type.Optional(Finite()),
    traceSigma: Type.Optional(Finite()),
    /** The window's width in training steps, and how many measurements it holds. */
    windowSteps: Type.Optional(Int()),
    windowCount: Type.Optional(Int()),
    /**
     * Which estimator made the record (absent: 'microbatches', older logs): 'microbatches' from K held-out
     * microbatches, 'ranks' from a data-parallel run's per-rank gradients before the all-reduce (small batch:
     * one rank's, big: all `ranks` together, `batchSize`).
     */
    estimator: Type.Optional(Type.Union([Type.Literal('microbatches'), Type.Literal('ranks')])),
    /** The data-parallel ranks of a 'ranks' estimate. */
    ranks: Type.Optional(Int({ minimum: 2 })),
    /** The two batch sizes: K microbatches of `microbatchSize` held-out examples (small) and their union (big). */
    microbatches: Type.Optional(Int()),
    microbatchSize: Type.Optional(Int()),
    /** What the SNRs are of (older logs: the microbatch's, unstated): the batch is the union of the K microbatches. */
    snrOf: Type.Optional(Type.Union([Type.Literal('microbatch'), Type.Literal('batch'), Type.Literal('momentum')])),
    /** SNR along the top-k singular directions of M (largest σ first). */
    snrTop: Type.Optional(Type.Array(Finite())),
    /** SNR along the bottom-k singular directions of M (smallest σ last). */
    snrBottom: Type.Optional(Type.Array(Finite())),
    /** 95% confidence bounds of each SNR (noncentral t, K − 1 degrees of freedom), index by index. */
    snrTopLow: Type.Optional(Type.Array(Finite())),
    snrTopHigh: Type.Optional(Type.Array(Finite())),
    snrBottomLow: Type.Optional(Type.Array(Finite())),
    snrBottomHigh: Type.Optional(Type.Array(Finite())),
  }),
  Type.Object({
    ...RecordBase,
    kind: Type.Literal('diagnostics_cost'),
    step: Int(),
    costsMs: Type.Record(Type.String(), Finite()),
    overheadPct: Finite(),
    every: Int(),
  }),
  /** The audit trail: every accepted change, with who asked and why. */
  Type.Object({
    ...RecordBase,
    kind: Type.Literal('control'),
    step: Int(),
    command: Str(40),
    field: Str(40),
    old: Type.Unknown(),
    new: Type.Unknown(),
    source: Str(64),
    reason: Str(500),
    commandId: Type.Optional(Str(64)),
  }),
  Type.Object({ ...RecordBase, kind: Type.Literal('state'), step: Int(), state: RunStateSchema, reason: Str(1000) }),
  Type.Object({
    ...RecordBase,
    kind: Type.Literal('alert'),
    step: Int(),
    level: Type.Union([Type.Literal('warning'), Type.Literal('error')]),
    code: Str(40),
    message: Str(2000),
    layer: Type.Optional(Str()),
  }),
  Type.Object({ ...RecordBase, kind: Type.Literal('checkpoint'), step: Int(), file: Str(4096), reason: Str(500) }),
  /** The p-probe: the local quadratic model's predicted one-step decrease for each candidate p. */
  Type.Object({
    ...RecordBase,
    kind: Type.Literal('p_probe'),
    step: Int(),
    /** The p the run is using now. */
    currentP: Finite(),
    /** The step size the prediction assumes (the run's lr). */
    eta: Finite(),
    candidates: Type.Array(ProbeCandidateSchema, { minItems: 1, maxItems: 16 }),
    /** The candidate with the largest predicted decrease. */
    bestP: Finite(),
    /** Examples in the held-out batch the probe measured on. */
    heldOutExamples: Int(),
    costMs: Finite(),
    /** All p-probes so far as a share of training time, percent (kept within the diagnostics budget). */
    overheadPct: Finite(),
  }),
  /**
   * The mode model's p (docs/algorithms.md §10): curvature, gradient and noise measured along log-spaced
   * singular directions of each measured layer's momentum, the expected residual over the next
   * `horizonSteps` steps for each p on `pGrid`, and the p that minimises it, with a bootstrap confidence.
   */
  Type.Object({
    ...RecordBase,
    kind: Type.Literal('p_model'),
    step: Int(),
    currentP: Finite(),
    /** What the schedule in force would set over the horizon: its p at the horizon's start and end. */
    scheduleP: Type.Object({ start: Finite(), end: Finite() }),
    horizonSteps: Int({ minimum: 1 }),
    layers: Type.Array(ModeLayerSchema, { minItems: 1, maxItems: 256 }),
    curve: Type.Array(ModeCurvePointSchema, { minItems: 1, maxItems: 64 }),
    recommendedP: Finite(),
    /** Fraction of bootstrap replicates whose best p lies within one grid step of `recommendedP`. */
    confidence: Finite({ minimum: 0, maximum: 1 }),
    /** The cross-check, and the p it prefers. */
    crossCheck: Type.Array(CrossCheckSchema, { maxItems: 64 }),
    crossCheckBestP: Type.Union([Finite(), Type.Null()]),
    microbatches: Int({ minimum: 2 }),
    microbatchSize: Int({ minimum: 1 }),
    costMs: Finite(),
    /** Probes so far as a share of training time, percent (they share the diagnostics budget). */
    overheadPct: Finite(),
  }),
  /**
   * A fork-and-race result: from the state at `step`, `steps` steps as the run was set and `steps` steps
   * with the suggestion applied, on the same batches; `winner` by held-out loss (a tie within `tieTolerance`,
   * relative; a branch that diverged loses, and of two, the one that diverged first). The run's state
   * afterwards is exactly what it was before.
   */
  Type.Object({
    ...RecordBase,
    kind: Type.Literal('race'),
    step: Int(),
    suggestionId: Str(64),
    rule: Type.Union(ADVISOR_RULES.map((r) => Type.Literal(r))),
    steps: Int({ minimum: 1 }),
    baseline: RaceBranchSchema,
    suggested: RaceBranchSchema,
    winner: Type.Union([Type.Literal('suggested'), Type.Literal('baseline'), Type.Literal('tie')]),
    tieTolerance: Finite({ minimum: 0 }),
    /** Examples both branches were scored on; null for a PyTorch run, scored on the script's probe() (docs/python.md §3). */
    heldOutExamples: Type.Union([Int(), Type.Null()]),
    costMs: Finite(),
  }),
  /** A suggested change with the measurements that triggered it (see trainer/advisor). */
  Type.Object({
    ...RecordBase,
    kind: Type.Literal('suggestion'),
    step: Int(),
    id: Str(64),
    rule: Type.Union(ADVISOR_RULES.map((r) => Type.Literal(r))),
    title: Str(300),
    change: SuggestedChangeSchema,
    evidence: Type.Array(EvidenceSchema, { maxItems: 20 }),
    /** 0–1: how strongly the measurements support it. */
    confidence: Finite({ minimum: 0, maximum: 1 }),
    expectedEffect: Str(500),
  }),
  /** What became of a suggestion: applied (by whom), dismissed, superseded by a newer one, or refused. */
  Type.Object({
    ...RecordBase,
    kind: Type.Literal('suggestion_outcome'),
    step: Int(),
    id: Str(64),
    outcome: Type.Union(SUGGESTION_OUTCOMES.map((o) => Type.Literal(o))),
    source: Str(64),
    reason: Str(500),
  }),
]);
export type LogRecord = Static<typeof LogRecordSchema>;
export type LogRecordKind = LogRecord['kind'];
/** A record before the log stamps it with its seq and time. */
export type NewLogRecord = LogRecord extends infer R ? (R extends LogRecord ? Omit<R, 'seq' | 't'> : never) : never;
export type RecordOf<K extends LogRecordKind> = Extract<LogRecord, { kind: K }>;

// ---------- trainer → client messages ----------

export const ERROR_CODES = [
  'BAD_FRAME',
  'BAD_MESSAGE',
  'UNSUPPORTED_PROTOCOL',
  'INVALID_COMMAND',
  'NOT_ALLOWED_NOW',
  'RUN_ENDED',
  'INTERNAL',
] as const;
export type ProtocolErrorCode = (typeof ERROR_CODES)[number];

export const ServerMessageSchema = Type.Union([
  Type.Object({ type: Type.Literal('hello'), protocol: Int(), runId: Str(), runDir: Str(4096), lastSeq: Int({ minimum: 0 }) }),
  Type.Object({ type: Type.Literal('events'), records: Type.Array(LogRecordSchema) }),
  /** Sent once the replay a `subscribe` asked for has been sent in full. */
  Type.Object({ type: Type.Literal('replayed'), throughSeq: Int({ minimum: 0 }) }),
  Type.Object({ type: Type.Literal('ack'), id: Str(64), kind: Str(40), step: Int(), detail: Type.Optional(Str(1000)) }),
  Type.Object({
    type: Type.Literal('error'),
    id: Type.Optional(Str(64)),
    code: Type.Union(ERROR_CODES.map((c) => Type.Literal(c))),
    message: Str(2000),
    path: Type.Optional(Str(500)),
  }),
]);
export type ServerMessage = Static<typeof ServerMessageSchema>;

// ---------- validation ----------

/**
 * TypeBox reports a failed union as "Expected union value" at its root. For discriminated unions we
 * validate against the member the discriminator names, so errors point at the actual field.
 */
function variantFor(union: TSchema, key: string, value: unknown): TSchema | undefined {
  const tag = (value as Record<string, unknown> | null)?.[key];
  return (union.anyOf as TSchema[]).find((m) => m.properties?.[key]?.const === tag);
}

function preciseIssues(value: unknown): ValidationIssue[] | null {
  const message = variantFor(ClientMessageSchema, 'type', value);
  if (!message) return null;
  const command = (value as { command?: unknown }).command;
  const commandSchema = (value as { type: string }).type === 'command' ? variantFor(CommandSchema, 'kind', command) : undefined;
  const commandIsObject = typeof command === 'object' && command !== null;
  const issues: ValidationIssue[] = [];
  for (const e of Value.Errors(message, value)) {
    if (commandIsObject && e.path.startsWith('/command')) continue;
    issues.push({ path: e.path || '/', message: e.message });
  }
  if (commandSchema) {
    const schedule = (command as { schedule?: unknown }).schedule;
    const scheduleSchema = variantFor(ScheduleSpecSchema, 'type', schedule);
    for (const e of Value.Errors(commandSchema, command)) {
      if (scheduleSchema && e.path.startsWith('/schedule')) continue;
      issues.push({ path: `/command${e.path}`, message: e.message });
    }
    if (scheduleSchema) for (const e of Value.Errors(scheduleSchema, schedule)) issues.push({ path: `/command/schedule${e.path}`, message: e.message });
  } else if ((value as { type: string }).type === 'command' && commandIsObject) {
    const kinds = (CommandSchema.anyOf as TSchema[]).map((m) => m.properties.kind.const).join(', ');
    issues.push({ path: '/command/kind', message: `unknown command ${JSON.stringify((command as { kind?: unknown }).kind)}; expected one of ${kinds}` });
  }
  return issues.length ? issues.slice(0, 10) : null;
}

export const validateClientMessage = (v: unknown): Validated<ClientMessage> => {
  const result = validate(ClientMessageSchema, v);
  if (result.ok) return result;
  return { ok: false, issues: preciseIssues(v) ?? result.issues };
};
export const validateServerMessage = (v: unknown) => validate(ServerMessageSchema, v);
export const validateLogRecord = (v: unknown) => validate(LogRecordSchema, v);
export const validateCommand = (v: unknown) => validate(CommandSchema, v);

/**
 * Parses one client frame: size, JSON, then shape. Never throws; a refusal carries the error reply to
 * send back (with the command id when one could be read, so the client can match it).
 */
export function parseClientMessage(frame: string): { ok: true; message: ClientMessage } | { ok: false; error: Extract<ServerMessage, { type: 'error' }> } {
  if (frame.length > MAX_CLIENT_FRAME_BYTES) {
    return { ok: false, error: { type: 'error', code: 'BAD_FRAME', message: `frame of ${frame.length} bytes exceeds ${MAX_CLIENT_FRAME_BYTES}` } };
  }
  let json: unknown;
  try {
    json = JSON.parse(frame);
  } catch {
    return { ok: false, error: { type: 'error', code: 'BAD_FRAME', message: 'frame is not valid JSON' } };
  }
  const result = validateClientMessage(json);
  if (result.ok) return { ok: true, message: result.value };
  const id = typeof (json as { id?: unknown })?.id === 'string' ? ((json as { id: string }).id.slice(0, 64)) : undefined;
  const first = result.issues[0];
  const isCommand = (json as { type?: unknown })?.type === 'command';
  return {
    ok: false,
    error: {
      type: 'error',
      ...(id ? { id } : {}),
      code: isCommand ? 'INVALID_COMMAND' : 'BAD_MESSAGE',
      message: result.issues.map((i) => `${i.path}: ${i.message}`).join('; ').slice(0, 2000),
      path: first.path.slice(0, 500),
    },
  };
}

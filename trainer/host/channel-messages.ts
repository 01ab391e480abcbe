/**
 * The messages between a Python training process and its Node host (docs/python.md §3): one JSON object
 * per NDJSON line. These are not the wire protocol clients speak (common/protocol.ts); they carry its
 * records and commands, which keep their own schemas. The Python side (trainer/python/muonscope) writes
 * the same shapes by hand, so the doc's tables are the contract and this file must agree with them.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { CommandSchema, LogRecordSchema, type Command, type ModeDirection, type RecordOf, type SuggestedChange } from '../../common/protocol.js';
import { Finite, Int, Str, validate, type ValidationIssue, type Validated } from '../../common/schema.js';

/** The longest line either side may send, in bytes (without its newline). */
export const MAX_CHANNEL_LINE_BYTES = 4 * 1024 * 1024;
export const CHANNEL_PROTOCOL = 1;

const Id = Type.String({ minLength: 1, maxLength: 64 });

export const HelloSchema = Type.Object({
  type: Type.Literal('hello'),
  token: Str(256),
  protocol: Int(),
  pid: Int({ minimum: 0 }),
  /** torch.distributed's rank and world size; one process (rank 0) talks to the host. */
  rank: Type.Optional(Int({ minimum: 0 })),
  worldSize: Type.Optional(Int({ minimum: 1 })),
});
export type Hello = Static<typeof HelloSchema>;

/** What Python may send after its hello (the hello itself is checked on its own, first). */
export const PythonMessageSchema = Type.Union([
  /** A log record without seq and t; the host's log stamps, validates and writes it. */
  Type.Object({ type: Type.Literal('record'), record: Type.Object({ kind: Str(40) }) }),
  /** The command `id` took effect at `step` (= steps completed then). */
  Type.Object({ type: Type.Literal('ack'), id: Id, step: Int({ minimum: 0 }), detail: Type.Optional(Str(1000)) }),
  /** The command `id` was refused and changed nothing; `code` one of the protocol's error codes. */
  Type.Object({ type: Type.Literal('refused'), id: Id, code: Str(40), message: Str(2000) }),
  Type.Object({ type: Type.Literal('measured'), id: Id, result: Type.Unknown() }),
  Type.Object({ type: Type.Literal('bye'), reason: Type.Optional(Str(1000)) }),
]);
export type PythonMessage = Static<typeof PythonMessageSchema>;

/** Codes of the host's `error` message on the channel (not the protocol's ERROR_CODES: a different peer). */
export type ChannelErrorCode = 'BAD_HELLO' | 'BAD_TOKEN' | 'UNSUPPORTED_PROTOCOL' | 'BUSY' | 'LINE_TOO_LONG' | 'BAD_JSON' | 'BAD_MESSAGE' | 'BAD_RECORD' | 'UNKNOWN_COMMAND';

export type HostMessage =
  | { type: 'welcome'; runId: string; runDir: string; config: unknown }
  | { type: 'command'; id: string; command: Command; source: string }
  | { type: 'measure'; id: string; what: 'modeDirections'; params: MeasureParams }
  | { type: 'measure'; id: string; what: 'race'; params: RaceParams }
  | { type: 'error'; code: ChannelErrorCode; message: string; path?: string };

/** The union member a discriminated value claims to be, for errors that name the field at fault. */
function variant(union: TSchema, key: string, value: unknown): TSchema | undefined {
  const tag = (value as Record<string, unknown> | null)?.[key];
  return (union.anyOf as TSchema[]).find((m) => m.properties?.[key]?.const === tag);
}

function issuesAgainst(schema: TSchema, value: unknown, prefix: string): ValidationIssue[] {
  const out: ValidationIssue[] = [];
  for (const e of Value.Errors(schema, value)) {
    out.push({ path: `${prefix}${e.path}` || '/', message: e.message });
    if (out.length >= 10) break;
  }
  return out;
}

export function validateHello(value: unknown): Validated<Hello> {
  return validate(HelloSchema, value);
}

export function validatePythonMessage(value: unknown): Validated<PythonMessage> {
  const result = validate(PythonMessageSchema, value);
  if (result.ok) return result;
  const member = variant(PythonMessageSchema, 'type', value);
  if (!member) {
    const types = (PythonMessageSchema.anyOf as TSchema[]).map((m) => m.properties.type.const).join(', ');
    return { ok: false, issues: [{ path: '/type', message: `unknown message type ${JSON.stringify((value as { type?: unknown } | null)?.type)}; expected one of ${types} (hello only first)` }] };
  }
  return { ok: false, issues: issuesAgainst(member, value, '') };
}

/**
 * Why a stamped record fails the protocol's LogRecordSchema, with JSON pointers into the record: checked
 * against the kind it names, since a failed union only says "Expected union value" at its root. Used to
 * explain a refusal; the refusal itself is the run log's own validation.
 */
export function recordIssues(record: unknown): ValidationIssue[] {
  const member = variant(LogRecordSchema, 'kind', record);
  if (!member) {
    const kinds = (LogRecordSchema.anyOf as TSchema[]).map((m) => m.properties.kind.const).join(', ');
    return [{ path: '/kind', message: `unknown record kind ${JSON.stringify((record as { kind?: unknown } | null)?.kind)}; expected one of ${kinds}` }];
  }
  const issues = issuesAgainst(member, record, '');
  return issues.length ? issues : [{ path: '/', message: 'does not match the record schema' }];
}

/** A command as the host forwards it: checked against the protocol's schema once more, to fail here rather than in Python. */
export function checkedCommand(command: unknown): Command {
  const result = validate(CommandSchema, command);
  if (!result.ok) throw new Error(`host built an invalid command: ${result.issues.map((i) => `${i.path} ${i.message}`).join('; ')}`);
  return result.value;
}

/** What a `measure` asks for (docs/python.md §3): `layers` by name (all of Python's DynMuon layers when left out). */
export interface MeasureParams {
  layers?: string[];
  /** Directions per layer, at log-spaced ranks. */
  k: number;
  /** Held-out microbatches for the gradient components (Python may use fewer: its noise_probe's). */
  microbatches: number;
  /** The horizon the schedule's p is read over (Python clips it to the steps left). */
  horizonSteps: number;
  /** The cross-check's candidate p values (docs/algorithms.md §10.6 point 5): Python measures, the host scores. */
  crossCheck?: number[];
}

/** The p_model record's direction schema, taken from the protocol rather than declared twice. */
function protocolModeDirection(): TSchema {
  const pModel = (LogRecordSchema.anyOf as TSchema[]).find((m) => m.properties?.kind?.const === 'p_model');
  const schema = pModel?.properties?.layers?.items?.properties?.directions?.items as TSchema | undefined;
  if (!schema) throw new Error('channel-messages: the protocol has no p_model directions schema');
  return schema;
}

/**
 * The `measured` result of a `modeDirections` measure: per layer the directions (the `p_model` record's
 * shapes), and what the mode model needs besides, as Python's optimizer has it.
 */
export const ModeDirectionsResultSchema = Type.Object({
  what: Type.Literal('modeDirections'),
  /** The last completed step (the weights measured are after it). */
  step: Int({ minimum: 0 }),
  layers: Type.Array(
    Type.Object({
      layer: Str(200),
      rows: Int({ minimum: 1 }),
      cols: Int({ minimum: 1 }),
      /** The layer's step per unit of the run's lr: its group's lr over the run's, times Muon's shape scale. */
      scale: Finite({ exclusiveMinimum: 0 }),
      directions: Type.Array(Type.Unsafe<ModeDirection>(protocolModeDirection()), { minItems: 1, maxItems: 64 }),
    }),
    { minItems: 1, maxItems: 256 },
  ),
  microbatches: Int({ minimum: 2 }),
  microbatchSize: Int({ minimum: 1 }),
  /** The training step's batch size. */
  batchSize: Finite({ exclusiveMinimum: 0 }),
  /** The run's lr (the first param group's). */
  lr: Finite({ exclusiveMinimum: 0 }),
  /** The p the next step uses. */
  currentP: Finite(),
  /** The schedule's p at the next step and `horizonSteps` later. */
  scheduleP: Type.Object({ start: Finite(), end: Finite() }),
  horizonSteps: Int({ minimum: 1 }),
  normalization: Type.Union([Type.Literal('frobenius'), Type.Literal('spectral'), Type.Literal('none')]),
  /** DynMuon's ε and gain bound (the host applies the bound at the p in force, as the TS probe does). */
  damping: Finite({ minimum: 0 }),
  maxGain: Type.Union([Finite({ exclusiveMinimum: 0 }), Type.Null()]),
  costMs: Finite({ minimum: 0 }),
  /** Per candidate p asked for, the run's step direction d_p's products: gᵀd on each half of the microbatches and dᵀHd. */
  crossCheck: Type.Optional(Type.Array(Type.Object({ p: Finite(), gdA: Finite(), gdB: Finite(), dHd: Finite() }), { maxItems: 64 })),
});
export type ModeDirectionsResult = Static<typeof ModeDirectionsResultSchema>;

/** A `measured` result checked, with JSON pointers from the message (`/result/layers/0/rows`) when it is not. */
export function validateModeDirections(result: unknown): Validated<ModeDirectionsResult> {
  const checked = validate(ModeDirectionsResultSchema, result);
  if (checked.ok) return checked;
  return { ok: false, issues: issuesAgainst(ModeDirectionsResultSchema, result, '/result') };
}

/** What a `race` measure asks for (docs/python.md §3): both branches `steps` long, the suggested one with `change` made. */
export interface RaceParams {
  steps: number;
  change: SuggestedChange;
}

type RaceBranchScore = RecordOf<'race'>['baseline'];

/** The race record's branch schema, taken from the protocol rather than declared twice. */
function protocolRaceBranch() {
  const race = (LogRecordSchema.anyOf as TSchema[]).find((m) => m.properties?.kind?.const === 'race');
  const schema = race?.properties?.baseline as TSchema | undefined;
  if (!schema) throw new Error('channel-messages: the protocol has no race branch schema');
  return Type.Unsafe<RaceBranchScore>(schema);
}

/** The `measured` result of a `race` measure: both branches' scores; the host judges them (trainer/run/race-outcome.ts). */
export const RaceResultSchema = Type.Object({
  what: Type.Literal('race'),
  /** The step both branches started at (= steps completed). */
  start: Int({ minimum: 0 }),
  steps: Int({ minimum: 1 }),
  baseline: protocolRaceBranch(),
  suggested: protocolRaceBranch(),
  /** null: the branches were scored on the script's probe(), whose size Python does not know. */
  heldOutExamples: Type.Union([Int({ minimum: 1 }), Type.Null()]),
  costMs: Finite({ minimum: 0 }),
});
export type RaceMeasured = Static<typeof RaceResultSchema>;

/** A `race` measure's result checked, with JSON pointers from the message when it is not. */
export function validateRaceResult(result: unknown): Validated<RaceMeasured> {
  const checked = validate(RaceResultSchema, result);
  if (checked.ok) return checked;
  return { ok: false, issues: issuesAgainst(RaceResultSchema, result, '/result') };
}

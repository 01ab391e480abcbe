/**
 * The run configuration (`*.muonscope.json`): one TypeBox schema that is at once the runtime validator,
 * the static type, and the JSON Schema the package ships for editor IntelliSense
 * (schema/run-config.schema.json, kept in sync by a test). Every field has a default, so `{}` is a good
 * first run: the tiny transformer on the Markov source with DynMuon (exact, logistic schedule).
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { isMuonscopeError } from '../../common/errors.js';
import { ScheduleSpecSchema, validateSchedule } from '../../common/schedules.js';
import { TINY_TRANSFORMER_DEFAULT } from '../models/transformer.js';
import { ADAMW_DEFAULTS, DYNMUON_DEFAULTS, MUON_DEFAULTS } from '../optim/hyperparameters.js';

const d = (description: string) => ({ description, markdownDescription: description });

const TransformerModel = Type.Object(
  {
    type: Type.Literal('transformer'),
    width: Type.Integer({ minimum: 16, maximum: 512, default: TINY_TRANSFORMER_DEFAULT.width, ...d('Model width (embedding size).') }),
    layers: Type.Integer({ minimum: 1, maximum: 8, default: TINY_TRANSFORMER_DEFAULT.layers, ...d('Number of transformer blocks.') }),
    heads: Type.Integer({ minimum: 1, maximum: 16, default: TINY_TRANSFORMER_DEFAULT.heads, ...d('Attention heads per block; must divide `width`.') }),
    contextLength: Type.Integer({ minimum: 8, maximum: 256, default: TINY_TRANSFORMER_DEFAULT.contextLength, ...d('Characters of context per sequence.') }),
  },
  { additionalProperties: false, ...d('A tiny decoder-only character transformer.') },
);

const MlpModel = Type.Object(
  {
    type: Type.Literal('mlp'),
    hiddenDims: Type.Array(Type.Integer({ minimum: 1, maximum: 4096 }), { minItems: 1, maxItems: 8, default: [256, 256], ...d('Hidden layer widths.') }),
    activation: Type.Union([Type.Literal('relu'), Type.Literal('tanh'), Type.Literal('gelu')], { default: 'gelu' }),
  },
  { additionalProperties: false, ...d('A multilayer perceptron (for the teacher–student task).') },
);

const MarkovTask = Type.Object(
  {
    type: Type.Literal('markov'),
    vocabSize: Type.Integer({ minimum: 2, maximum: 128, default: TINY_TRANSFORMER_DEFAULT.vocabSize, ...d('Alphabet size of the order-2 Markov source.') }),
  },
  { additionalProperties: false, ...d('An order-2 Markov character source; its entropy floor H* is computed exactly.') },
);

const TextFileTask = Type.Object(
  {
    type: Type.Literal('textFile'),
    path: Type.String({ minLength: 1, ...d('A UTF-8 text file, relative to the config file or absolute.') }),
  },
  { additionalProperties: false, ...d('Your own text, character-level (transformer only).') },
);

const TeacherStudentTask = Type.Object(
  {
    type: Type.Literal('teacherStudent'),
    inputDim: Type.Integer({ minimum: 1, maximum: 4096, default: 64 }),
    outputDim: Type.Integer({ minimum: 1, maximum: 4096, default: 16 }),
    teacherWidth: Type.Integer({ minimum: 1, maximum: 4096, default: 128 }),
    curvatureDecay: Type.Number({ minimum: 0, maximum: 8, default: 1, ...d('Input covariance eigenvalues fall off as i^−decay.') }),
    labelNoise: Type.Number({ minimum: 0, maximum: 10, default: 0.1, ...d('Std of Gaussian label noise; the loss floor is its square.') }),
  },
  { additionalProperties: false, ...d('Regression onto a fixed random teacher network.') },
);

const MuonOptimizer = Type.Object(
  {
    type: Type.Literal('muon'),
    lr: Type.Number({ exclusiveMinimum: 0, maximum: 10, default: MUON_DEFAULTS.lr }),
    weightDecay: Type.Number({ minimum: 0, maximum: 1, default: MUON_DEFAULTS.weightDecay }),
    momentum: Type.Number({ minimum: 0, exclusiveMaximum: 1, default: MUON_DEFAULTS.momentum }),
    nesterov: Type.Boolean({ default: MUON_DEFAULTS.nesterov }),
    coefficients: Type.Union([Type.Literal('keller'), Type.Literal('polarExpress')], { default: MUON_DEFAULTS.coefficients }),
    adjustLr: Type.Union([Type.Literal('original'), Type.Literal('match_rms_adamw')], { default: MUON_DEFAULTS.adjustLr }),
  },
  { additionalProperties: false, ...d('Muon (torch.optim.Muon semantics) for hidden matrices.') },
);

const DynMuonOptimizer = Type.Object(
  {
    type: Type.Literal('dynmuon'),
    mode: Type.Union([Type.Literal('exact'), Type.Literal('released'), Type.Literal('lrOnly')], {
      default: DYNMUON_DEFAULTS.mode,
      ...d('`exact`: damped exact U·φ_p(S)·Vᵀ, sized as `normalization` says. `released`: the published code\'s behaviour. `lrOnly`: Muon × ‖M‖_F^p (ablation).'),
    }),
    method: Type.Union([Type.Literal('auto'), Type.Literal('exact'), Type.Literal('matmul')], { default: DYNMUON_DEFAULTS.method, ...d('How `exact` mode shapes: float64 eigendecomposition, matmul-only approximation, or chosen by size.') }),
    schedule: { ...ScheduleSpecSchema, default: DYNMUON_DEFAULTS.schedule, ...d('The p schedule over training progress q = step/steps.') },
    damping: Type.Number({ minimum: 0, maximum: 1, default: DYNMUON_DEFAULTS.damping }),
    maxGain: Type.Union([Type.Number({ minimum: 1 }), Type.Null()], {
      default: DYNMUON_DEFAULTS.maxGain,
      ...d('`exact`, p < 0: no direction gets more than this many times the top direction\'s step (the damping is raised to hold it); null: the damping alone.'),
    }),
    normalization: Type.Union([Type.Literal('frobenius'), Type.Literal('spectral'), Type.Literal('none')], {
      default: DYNMUON_DEFAULTS.normalization,
      ...d('`exact`: the shaped update at Muon\'s Frobenius norm sqrt(min(m, n)), at Muon\'s operator norm 1, or unscaled U·φ_p(S)·Vᵀ (the lr sets its size).'),
    }),
    lr: Type.Number({ exclusiveMinimum: 0, maximum: 10, default: MUON_DEFAULTS.lr }),
    weightDecay: Type.Number({ minimum: 0, maximum: 1, default: MUON_DEFAULTS.weightDecay }),
    momentum: Type.Number({ minimum: 0, exclusiveMaximum: 1, default: MUON_DEFAULTS.momentum }),
    nesterov: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, ...d('DynMuon: spectral shaping U·S^p·Vᵀ with a schedule for p.') },
);

const AdamWOptimizer = Type.Object(
  { type: Type.Literal('adamw') },
  { additionalProperties: false, ...d('AdamW for every parameter (settings under `adamw`).') },
);

export const RunConfigSchema = Type.Object(
  {
    $schema: Type.Optional(Type.String()),
    command: Type.Optional(
      Type.Array(Type.String({ maxLength: 4096, ...d('One argument of the command (at most 4096 characters).') }), {
        minItems: 1,
        ...d(
          'A PyTorch run: the training command and its arguments, e.g. `["python", "train.py", "--steps", "2000"]`, started by `muonscope run CONFIG -- COMMAND…` (the extension replaces a first `python`/`python3` with the chosen interpreter: the `muonscope.pythonInterpreter` setting, else the Python extension\'s). The script trains; `model`, `task` and `compute` are the built-in trainer\'s and are ignored (docs/python.md §5).',
        ),
      }),
    ),
    name: Type.String({ minLength: 1, maxLength: 100, default: 'run', ...d('A name for the run (used in its folder name).') }),
    seed: Type.Integer({ minimum: 0, maximum: 2 ** 31 - 1, default: 1 }),
    steps: Type.Integer({ minimum: 1, maximum: 10_000_000, default: 1500, ...d('Training steps.') }),
    batchSize: Type.Integer({ minimum: 1, maximum: 65536, default: 32, ...d('Sequences (or examples) per training step.') }),
    model: Type.Union([TransformerModel, MlpModel], { default: { type: 'transformer' } }),
    task: Type.Union([MarkovTask, TextFileTask, TeacherStudentTask], { default: { type: 'markov' } }),
    optimizer: Type.Union([DynMuonOptimizer, MuonOptimizer, AdamWOptimizer], { default: { type: 'dynmuon' } }),
    adamw: Type.Object(
      {
        lr: Type.Number({ exclusiveMinimum: 0, maximum: 10, default: ADAMW_DEFAULTS.lr }),
        weightDecay: Type.Number({ minimum: 0, maximum: 1, default: ADAMW_DEFAULTS.weightDecay }),
        betas: Type.Tuple([Type.Number({ minimum: 0, exclusiveMaximum: 1 }), Type.Number({ minimum: 0, exclusiveMaximum: 1 })], { default: ADAMW_DEFAULTS.betas }),
      },
      { additionalProperties: false, default: {}, ...d('AdamW for embeddings, the output head, biases and gains (and everything when optimizer is adamw).') },
    ),
    routing: Type.Array(
      Type.Object({ pattern: Type.String({ minLength: 1 }), optimizer: Type.Union([Type.Literal('matrix'), Type.Literal('adamw')]) }, { additionalProperties: false }),
      { default: [], ...d('Overrides, first match wins: parameters whose name matches `pattern` (a regular expression) go to that optimizer.') },
    ),
    evalEvery: Type.Integer({ minimum: 1, default: 50, ...d('Validation loss every N steps.') }),
    checkpointEvery: Type.Integer({ minimum: 1, default: 500, ...d('Checkpoint every N steps (also on stop and on demand).') }),
    diagnostics: Type.Object(
      {
        every: Type.Integer({ minimum: 1, default: 100, ...d('Per-layer spectra every K steps; the expensive probes are spaced further apart to stay within the budget (each is first measured within the first K steps).') }),
        adaptive: Type.Boolean({ default: true, ...d('Space out expensive diagnostics to stay within the overhead budget.') }),
        budgetPct: Type.Number({ exclusiveMinimum: 0, maximum: 100, default: 10, ...d('Diagnostics overhead budget, percent of training time.') }),
        curvature: Type.Boolean({ default: true }),
        noise: Type.Boolean({ default: true }),
        microbatches: Type.Integer({ minimum: 2, maximum: 64, default: 8, ...d('Microbatches a held-out training-size batch is split into for the gradient-noise estimators (the per-direction SNR\'s interval has K − 1 degrees of freedom).') }),
        noiseWindowSteps: Type.Integer({ minimum: 1, default: 1000, ...d('B_simple is averaged over the noise measurements of the last N training steps.') }),
        topK: Type.Integer({ minimum: 1, maximum: 512, default: 2, ...d('Singular directions probed for curvature and SNR (top k and bottom k).') }),
      },
      { additionalProperties: false, default: {} },
    ),
    advisor: Type.Object(
      {
        mode: Type.Union([Type.Literal('off'), Type.Literal('suggest'), Type.Literal('auto')], {
          default: 'suggest',
          ...d('`suggest`: suggestions appear in the dashboard with Apply / Dismiss. `auto`: confident ones are applied at once (logged as the advisor\'s). `off`: no suggestions.'),
        }),
        probeEvery: Type.Integer({ minimum: 0, default: 250, ...d('Steps between mode probes (DynMuon `exact` only): curvature, gradient and noise along singular directions of each layer\'s momentum, and the mode model\'s best p over the next probeEvery steps, with a one-step cross-check. 0 turns the probe off.') }),
        probeDirections: Type.Integer({ minimum: 3, maximum: 64, default: 12, ...d('Singular directions the mode probe measures per layer, at log-spaced ranks (each costs two gradients on the held-out batch).') }),
        probeMicrobatches: Type.Integer({ minimum: 2, maximum: 64, default: 8, ...d('Microbatches the mode probe splits its held-out batch into for the gradient noise along each direction (K − 1 degrees of freedom).') }),
        probeBatches: Type.Integer({ minimum: 1, maximum: 64, default: 1, ...d('Training-size batches pooled into the probe\'s held-out batch (each adds a training step\'s cost per gradient the probe takes).') }),
        cooldownSteps: Type.Integer({ minimum: 1, default: 50, ...d('Steps between two suggestions for the same target (lr, p).') }),
        autoMinConfidence: Type.Number({ minimum: 0, maximum: 1, default: 0.5, ...d('In `auto` mode, suggestions at least this confident are applied.') }),
      },
      { additionalProperties: false, default: {}, ...d('The schedule advisor: suggestions for p and lr from the measured curvature and noise.') },
    ),
    compute: Type.Object(
      {
        backend: Type.Union(['auto', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'].map((b) => Type.Literal(b)), { default: 'auto', ...d('TF.js backend for the model.') }),
        kernels: Type.Union(['auto', 'onnxruntime', 'onnxruntime-cuda', 'onnxruntime-cpu', 'tfjs'].map((k) => Type.Literal(k)), { default: 'auto', ...d('Provider of the optimizer\'s matrix kernels.') }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false, title: 'Muonscope run configuration' },
);

export type RunConfig = Static<typeof RunConfigSchema>;

export interface ConfigIssue {
  /** JSON path, e.g. `$.optimizer.lr`. */
  path: string;
  message: string;
  hint?: string;
}

function jsonPath(pointer: string): string {
  if (!pointer || pointer === '/') return '$';
  return '$' + pointer.split('/').slice(1).map((k) => (/^\d+$/.test(k) ? `[${k}]` : `.${k.replace(/~1/g, '/').replace(/~0/g, '~')}`)).join('');
}

/** The discriminated unions' members, by `type`, to give precise errors instead of "expected union". */
const UNIONS: Record<string, TSchema[]> = {
  model: [TransformerModel, MlpModel],
  task: [MarkovTask, TextFileTask, TeacherStudentTask],
  optimizer: [DynMuonOptimizer, MuonOptimizer, AdamWOptimizer],
};

/**
 * Value.Default merges a default object into a provided one, which for a discriminated union (the
 * schedule) mixes the default's fields into the user's; a schedule the user gave is kept as given.
 */
function withDefaults<T>(schema: TSchema, raw: T): T {
  const given = (raw as { optimizer?: { schedule?: unknown }; schedule?: unknown }) ?? {};
  // A given schedule goes back in as written, after the defaults: defaulted with the rest, it gets the
  // default (logistic) schedule's fields merged in, then no optimizer member matches and the whole
  // optimizer section is left without its defaults (mode, damping, normalization, …).
  const clone = structuredClone(raw) as { optimizer?: { schedule?: unknown }; schedule?: unknown };
  if (clone?.optimizer?.schedule !== undefined) delete clone.optimizer.schedule;
  if (clone?.schedule !== undefined) delete clone.schedule;
  const filled = Value.Default(schema, clone) as T;
  if (given.optimizer?.schedule !== undefined) (filled as { optimizer: { schedule: unknown } }).optimizer.schedule = structuredClone(given.optimizer.schedule);
  if (given.schedule !== undefined) (filled as { schedule: unknown }).schedule = structuredClone(given.schedule);
  return filled;
}

function typesOf(members: TSchema[]): string[] {
  return members.map((m) => (m.properties.type as { const: string }).const);
}

function unionIssues(key: string, value: unknown): ConfigIssue[] {
  const members = UNIONS[key];
  const type = (value as { type?: unknown })?.type;
  const member = members.find((m) => (m.properties.type as { const: string }).const === type);
  if (!member) {
    return [{ path: `$.${key}.type`, message: `unknown ${key} type ${JSON.stringify(type)}`, hint: `use one of: ${typesOf(members).join(', ')}` }];
  }
  const filled = withDefaults(member, value) as Record<string, unknown>;
  const issues = [...Value.Errors(member, filled)]
    .filter((e) => !e.path.startsWith('/schedule'))
    .map((e) => issueFor(`/${key}${e.path}`, e.message, e.schema));
  if ('schedule' in filled) issues.push(...scheduleIssues(filled.schedule, `$.${key}.schedule`));
  return issues;
}

/** The schedule's own validator names the exact field and the p range, where the union schema cannot. */
function scheduleIssues(spec: unknown, path: string): ConfigIssue[] {
  try {
    validateSchedule(spec, path);
    return Value.Check(ScheduleSpecSchema, spec) ? [] : [{ path, message: 'has fields this schedule type does not take', hint: 'see the schema for each schedule type' }];
  } catch (e) {
    if (!isMuonscopeError(e)) throw e;
    const [where, ...rest] = e.message.split(': ');
    return [{ path: where.startsWith('$') ? where : path, message: rest.join(': ') || e.message, hint: 'p must stay within [−1, 1]; types: constant, linear, cosine, piecewise, logistic, reversed' }];
  }
}

function issueFor(pointer: string, message: string, schema: TSchema): ConfigIssue {
  const path = jsonPath(pointer);
  let hint: string | undefined;
  if (message.includes('Unexpected property')) hint = 'remove it, or check its spelling against the schema';
  else if (schema?.default !== undefined) hint = `the default is ${JSON.stringify(schema.default)}`;
  else if (schema?.description) hint = schema.description;
  return { path, message, ...(hint ? { hint } : {}) };
}

/** What the schema cannot say of `command`: a program to start, and no NUL (an argv cannot hold one). */
function commandIssues(command: unknown): ConfigIssue[] {
  if (!Array.isArray(command)) return []; // absent, or the schema's own error
  const issues: ConfigIssue[] = [];
  if (command[0] === '') issues.push({ path: '$.command[0]', message: 'the program to run is empty', hint: 'e.g. ["python", "train.py"]' });
  command.forEach((arg, i) => {
    if (typeof arg === 'string' && arg.includes('\0')) issues.push({ path: `$.command[${i}]`, message: 'contains a NUL character, which no command argument can hold' });
  });
  return issues;
}

const COMPATIBLE: Record<string, string[]> = { transformer: ['markov', 'textFile'], mlp: ['teacherStudent'] };

/** Validates a parsed config: all issues with their JSON paths and hints, or the config with defaults. */
export function validateRunConfig(raw: unknown): { ok: true; config: RunConfig } | { ok: false; issues: ConfigIssue[] } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { ok: false, issues: [{ path: '$', message: 'a run config must be a JSON object', hint: 'start from `{}`: every field has a default' }] };
  }
  const filled = withDefaults(RunConfigSchema, raw) as Record<string, unknown>;
  const issues: ConfigIssue[] = [];
  for (const key of Object.keys(UNIONS)) issues.push(...unionIssues(key, filled[key]));
  for (const e of Value.Errors(RunConfigSchema, filled)) {
    const top = e.path.split('/')[1];
    if (top in UNIONS) continue; // reported precisely above
    issues.push(issueFor(e.path, e.message, e.schema));
  }
  issues.push(...commandIssues(filled.command));
  if (issues.length === 0) {
    const config = filled as RunConfig;
    // A PyTorch run trains the script's model: the built-in workload's cross-checks do not apply.
    if (config.command) return { ok: true, config };
    const allowed = COMPATIBLE[config.model.type];
    if (!allowed.includes(config.task.type)) {
      issues.push({ path: '$.task.type', message: `a ${config.model.type} model cannot train on task "${config.task.type}"`, hint: `use one of: ${allowed.join(', ')}` });
    }
    if (config.model.type === 'transformer' && config.model.width % config.model.heads !== 0) {
      issues.push({ path: '$.model.heads', message: `heads (${config.model.heads}) must divide width (${config.model.width})` });
    }
    config.routing.forEach((r, i) => {
      try {
        new RegExp(r.pattern);
      } catch (e) {
        issues.push({ path: `$.routing[${i}].pattern`, message: `not a valid regular expression: ${(e as Error).message}` });
      }
    });
    if (issues.length === 0) return { ok: true, config };
  }
  return { ok: false, issues };
}

export function formatConfigIssues(file: string, issues: ConfigIssue[]): string {
  return [`${file}: ${issues.length} problem${issues.length > 1 ? 's' : ''}; nothing was started`, ...issues.map((i) => `  ${i.path}: ${i.message}${i.hint ? ` (${i.hint})` : ''}`)].join('\n');
}

/**
 * Editors read `required` literally, but every field here has a default the trainer fills in; a field
 * with a default is therefore not required of the file (the discriminator `type` still is).
 */
function relaxDefaults(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(relaxDefaults);
  if (typeof node !== 'object' || node === null) return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) out[k] = relaxDefaults(v);
  const props = out.properties as Record<string, { default?: unknown }> | undefined;
  if (Array.isArray(out.required) && props) {
    const required = (out.required as string[]).filter((name) => props[name]?.default === undefined);
    if (required.length) out.required = required;
    else delete out.required;
  }
  return out;
}

/** The JSON Schema shipped for editors: TypeBox schemas are JSON Schema already, minus its symbols. */
export function runConfigJsonSchema(): object {
  return { $schema: 'http://json-schema.org/draft-07/schema#', ...(relaxDefaults(JSON.parse(JSON.stringify(RunConfigSchema))) as object) };
}

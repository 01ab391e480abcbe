/**
 * What the evidence harness runs: the tasks, the optimizers (each a partial run config), the lr grids and
 * the seeds, in a quick and a full size. Paired design: for a given seed every optimizer starts from the
 * same initialization and reads the same data stream (both derive from the run's seed).
 */
import { DYNMUON_REPO_LOGISTIC } from '../../../trainer/optim/schedules.js';

/** The released code's default schedule (p_max 1, p_min −0.25, τ = w = 0.04), for every scheduled variant. */
const PUBLISHED = DYNMUON_REPO_LOGISTIC;

export interface TaskSpec {
  name: string;
  label: string;
  steps: number;
  evalEvery: number;
  /** model, task, batchSize of the run config. */
  config: Record<string, unknown>;
  /**
   * How the target loss is fixed before the evaluation runs: `floorPlus` is the task's exact floor plus
   * a margin (Markov: H* + 0.05 nats); `muonAt` is the median validation loss tuned Muon reaches at that
   * fraction of the budget on the tuning seeds (teacher–student: reachable by the reference with room left).
   */
  target: { floorPlus: number } | { muonAt: number };
  /** Narrower tuning for the full size where runs are long (the transformer). */
  fullTuning?: { grid: { muon: number[]; adamw: number[] }; seeds: number[] };
}

export interface OptimizerSpec {
  name: string;
  label: string;
  /** Which lr grid it is tuned on. */
  family: 'muon' | 'adamw';
  config: (lr: number) => Record<string, unknown>;
}

const mlp = { type: 'mlp', hiddenDims: [128, 128], activation: 'gelu' };

export const TASKS: TaskSpec[] = [
  {
    name: 'ts-smooth',
    label: 'teacher–student, mild input curvature (decay 0.5), low label noise (0.05), batch 64',
    steps: 400,
    evalEvery: 10,
    config: { model: mlp, batchSize: 64, task: { type: 'teacherStudent', inputDim: 32, outputDim: 8, teacherWidth: 64, curvatureDecay: 0.5, labelNoise: 0.05 } },
    // Where the curves are still steep: late in a run they flatten, and steps-to-target there turns
    // tiny loss differences into large step differences.
    target: { muonAt: 0.35 },
  },
  {
    name: 'ts-illcond',
    label: 'teacher–student, steep input curvature (decay 2), high label noise (0.3), batch 16',
    steps: 400,
    evalEvery: 10,
    config: { model: mlp, batchSize: 16, task: { type: 'teacherStudent', inputDim: 32, outputDim: 8, teacherWidth: 64, curvatureDecay: 2, labelNoise: 0.3 } },
    target: { muonAt: 0.35 },
  },
  {
    name: 'markov',
    label: 'tiny transformer (width 32, 1 block) on the order-2 Markov source (8 characters), batch 32',
    steps: 1200,
    evalEvery: 25,
    config: { model: { type: 'transformer', width: 32, layers: 1, heads: 2, contextLength: 16 }, batchSize: 32, task: { type: 'markov', vocabSize: 8 } },
    target: { floorPlus: 0.05 },
    fullTuning: { grid: { muon: [0.01, 0.02, 0.04], adamw: [1e-3, 3e-3, 1e-2] }, seeds: [1000] },
  },
];

const dynmuon = (lr: number, extra: Record<string, unknown>) => ({ optimizer: { type: 'dynmuon', lr, ...extra }, advisor: { mode: 'off' } });

export const OPTIMIZERS: OptimizerSpec[] = [
  { name: 'adamw', label: 'AdamW', family: 'adamw', config: (lr) => ({ optimizer: { type: 'adamw' }, adamw: { lr }, advisor: { mode: 'off' } }) },
  { name: 'muon', label: 'Muon', family: 'muon', config: (lr) => ({ optimizer: { type: 'muon', lr }, advisor: { mode: 'off' } }) },
  { name: 'released', label: 'DynMuon released, published logistic', family: 'muon', config: (lr) => dynmuon(lr, { mode: 'released', schedule: PUBLISHED }) },
  { name: 'exact', label: 'DynMuon exact, published logistic', family: 'muon', config: (lr) => dynmuon(lr, { mode: 'exact', schedule: PUBLISHED }) },
  // The value the published schedule spends ~96% of training at: does the early positive phase matter?
  { name: 'constant', label: 'DynMuon exact, constant p = −0.25', family: 'muon', config: (lr) => dynmuon(lr, { mode: 'exact', schedule: { type: 'constant', p: -0.25 } }) },
  { name: 'reversed', label: 'DynMuon exact, reversed logistic', family: 'muon', config: (lr) => dynmuon(lr, { mode: 'exact', schedule: { type: 'reversed', of: PUBLISHED } }) },
  { name: 'lrOnly', label: 'DynMuon lrOnly (Muon × ‖M‖_F^p), published logistic', family: 'muon', config: (lr) => dynmuon(lr, { mode: 'lrOnly', schedule: PUBLISHED }) },
  {
    name: 'advisor',
    label: 'DynMuon exact, logistic + advisor auto',
    family: 'muon',
    config: (lr) => ({
      optimizer: { type: 'dynmuon', lr, mode: 'exact', schedule: PUBLISHED },
      advisor: { mode: 'auto', probeEvery: 40, cooldownSteps: 40 },
      // Steps, not seconds, are compared here: a 50% diagnostics budget lets the probes and the curvature
      // and noise measurements the rules read run at their cadence (the default 10% spaces them out).
      diagnostics: { every: 20, budgetPct: 50 },
    }),
  },
];

export interface Size {
  name: 'quick' | 'full';
  tuningSeeds: number[];
  evalSeeds: number[];
  grid: { muon: number[]; adamw: number[] };
  tasks: string[];
}

const seeds = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

export const SIZES: Record<'quick' | 'full', Size> = {
  quick: { name: 'quick', tuningSeeds: seeds(1000, 1), evalSeeds: seeds(1, 3), grid: { muon: [0.01, 0.02, 0.04], adamw: [1e-3, 3e-3, 1e-2] }, tasks: ['ts-smooth'] },
  full: {
    name: 'full',
    tuningSeeds: seeds(1000, 2),
    evalSeeds: seeds(1, 10),
    grid: { muon: [0.005, 0.01, 0.02, 0.04, 0.08], adamw: [3e-4, 1e-3, 3e-3, 1e-2] },
    tasks: TASKS.map((t) => t.name),
  },
};

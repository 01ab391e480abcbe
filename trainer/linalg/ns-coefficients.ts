/**
 * Newton–Schulz coefficient sets. Each step maps every singular value x of the (normalised) iterate by
 * a·x + b·x³ + c·x⁵; a set lists one (a, b, c) per step.
 */
export type NsStep = readonly [a: number, b: number, c: number];

export interface NsCoefficientSet {
  readonly name: NsCoefficientName;
  /** One triple per step; `steps` beyond its length repeat the last triple. */
  readonly steps: readonly NsStep[];
  /**
   * Divide the Frobenius norm by this before iterating. Polar Express's coefficients assume a 2%
   * margin (modded-nanogpt normalises by ‖X‖_F·1.02); the others assume none.
   */
  readonly normSafety: number;
}

export type NsCoefficientName = 'keller' | 'polarExpress' | 'dion';

/** KellerJordan/Muon and torch.optim.Muon: the same quintic every step. */
export const KELLER_QUINTIC: NsStep = [3.4445, -4.775, 2.0315];

export const NS_COEFFICIENT_SETS: Readonly<Record<NsCoefficientName, NsCoefficientSet>> = {
  keller: { name: 'keller', steps: [KELLER_QUINTIC], normSafety: 1 },
  // modded-nanogpt train_gpt.py; method: Amsel et al., "The Polar Express", arXiv 2505.16932.
  polarExpress: {
    name: 'polarExpress',
    steps: [
      [8.156554524902461, -22.48329292557795, 15.878769915207462],
      [4.042929935166739, -2.808917465908714, 0.5000178451051316],
      [3.8916678022926607, -2.772484153217685, 0.5060648178503393],
      [3.285753657755655, -2.3681294933425376, 0.46449024233003106],
      [2.3465413258596377, -1.7097828382687081, 0.42323551169305323],
    ],
    normSafety: 1.02,
  },
  // The five per-step quintics the published DynMuon code orthogonalises with (Dion's Newton–Schulz).
  dion: {
    name: 'dion',
    steps: [
      [4.0848, -6.8946, 2.927],
      [3.9505, -6.3029, 2.6377],
      [3.7418, -5.5913, 2.3037],
      [2.8769, -3.1427, 1.2046],
      [2.8366, -3.0525, 1.2012],
    ],
    normSafety: 1,
  },
};

/** The (a, b, c) triples for `steps` iterations of a set (the last triple repeats). */
export function expandNsSteps(set: NsCoefficientSet, steps: number): NsStep[] {
  const out: NsStep[] = [];
  for (let i = 0; i < steps; i++) out.push(set.steps[Math.min(i, set.steps.length - 1)]);
  return out;
}

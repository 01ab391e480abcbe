/**
 * The text New Run Config writes: a small, valid run that finishes in seconds, with every field the
 * user is likely to change shown and explained in `//` comments (the trainer and VS Code's JSONC mode
 * both accept whole-line comments). The trainer fills in every field left out.
 */
export type StarterKind = 'mlp' | 'transformer';

/** `diagnosticsEvery`: the muonscope.diagnosticsEvery setting; null leaves `every` to the trainer's default. */
export function starterConfig(kind: StarterKind, name: string, diagnosticsEvery: number | null = null): string {
  const model =
    kind === 'mlp'
      ? `  // An MLP regressing onto a fixed random teacher; the loss floor is the label-noise variance.
  "model": { "type": "mlp", "hiddenDims": [128, 128] },
  "task": { "type": "teacherStudent", "inputDim": 64, "outputDim": 16 },`
      : `  // A tiny character transformer on an order-2 Markov source with a known entropy floor.
  "model": { "type": "transformer", "width": 64, "layers": 2, "heads": 4, "contextLength": 32 },
  "task": { "type": "markov", "vocabSize": 32 },`;
  return `// Muonscope run configuration. Hover a field for its meaning; Ctrl+Space lists the others.
// Start it with the "Start run" CodeLens above, or "Muonscope: Start Run" in the command palette.
{
  "name": ${JSON.stringify(name)},
  "steps": ${kind === 'mlp' ? 600 : 400},
  "batchSize": ${kind === 'mlp' ? 64 : 16},
${model}
  // DynMuon shapes each update as U·S^p·Vᵀ; "exact" keeps Muon's update size, so only the shape changes.
  // The schedule moves p over training progress q = step/steps (constant, linear, cosine, piecewise, logistic).
  "optimizer": {
    "type": "dynmuon",
    "mode": "exact",
    "lr": 0.02,
    "schedule": { "type": "logistic", "pMax": 0.25, "pMin": -0.25, "tau": 0.04, "width": 0.04 }
  },
  // Per-layer spectra, curvature and gradient noise every N steps ("every"; left out: the trainer's
  // default), with the expensive probes spaced out to stay within a time budget.
  "diagnostics": { ${diagnosticsEvery === null ? '' : `"every": ${diagnosticsEvery}, `}"adaptive": true, "budgetPct": 10 },
  "evalEvery": 50,
  "checkpointEvery": 200
}
`;
}

/** The trainer's own comment rule (trainer/cli.ts): whole lines starting with `//`. */
export function stripLineComments(text: string): string {
  return text.replace(/^\s*\/\/.*$/gm, '');
}

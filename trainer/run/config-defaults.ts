/**
 * Defaults that come from outside the config file, filled into `diagnostics` only where the config leaves
 * a key out, before validation, so that they are part of the config as run (config.json, run_started)
 * rather than a change in the audit trail that nobody made:
 * - `every`: the extension's muonscope.diagnosticsEvery setting (`muonscope train --default-diagnostics-every N`);
 * - `budgetPct`: TORCH_DIAGNOSTICS_BUDGET_PCT for a PyTorch run hosted by `muonscope run`.
 */
export function withDefaultDiagnostic(raw: Record<string, unknown>, key: 'every' | 'budgetPct', value: number): void {
  const diagnostics = raw.diagnostics;
  // Anything but an object is the validator's to report, with its JSON path.
  if (diagnostics !== undefined && (typeof diagnostics !== 'object' || diagnostics === null || Array.isArray(diagnostics))) return;
  if ((diagnostics as Record<string, unknown> | undefined)?.[key] !== undefined) return;
  raw.diagnostics = { ...(diagnostics as object | undefined), [key]: value };
}

/**
 * The diagnostics budget of a PyTorch run hosted by `muonscope run` when its config sets none: lower than
 * the built-in trainer's 10% because watch() adds to someone else's training loop, and its speed goal is
 * 5% of that loop's time all told (a PyTorch run's budget counts watch's hooks too; the first probe of each
 * diagnostic's cost comes on top). The
 * Python package's own default (muonscope/watch.py DIAGNOSTICS_DEFAULTS) is the same number, tested.
 */
export const TORCH_DIAGNOSTICS_BUDGET_PCT = 4;

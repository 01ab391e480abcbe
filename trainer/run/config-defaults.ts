/**
 * Defaults that come from outside the config file: the extension's muonscope.diagnosticsEvery setting,
 * passed as `muonscope train --default-diagnostics-every N`. It fills `diagnostics.every` only where the
 * config leaves it out, before validation, so it is part of the config as run (config.json, run_started)
 * rather than a change in the audit trail that nobody made.
 */
export function withDefaultDiagnosticsEvery(raw: Record<string, unknown>, every: number): void {
  const diagnostics = raw.diagnostics;
  // Anything but an object is the validator's to report, with its JSON path.
  if (diagnostics !== undefined && (typeof diagnostics !== 'object' || diagnostics === null || Array.isArray(diagnostics))) return;
  if ((diagnostics as Record<string, unknown> | undefined)?.every !== undefined) return;
  raw.diagnostics = { ...(diagnostics as object | undefined), every };
}

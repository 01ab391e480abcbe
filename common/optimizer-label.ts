/**
 * The optimizer as every surface names it (the CLI's start line, the runs tree and status bar, the
 * dashboard), from a run config's `optimizer` section: `muon`, `adamw`, `dynmuon (released)`,
 * `dynmuon (exact, frobenius)`. DynMuon exact names its normalisation, which changes the step's operator
 * norm several-fold at the same p; a config written before the option existed has none to name.
 */
export function optimizerLabel(optimizer: unknown): string | undefined {
  const o = optimizer as { type?: unknown; mode?: unknown; normalization?: unknown } | null | undefined;
  if (!o || typeof o.type !== 'string') return undefined;
  if (o.type !== 'dynmuon' || typeof o.mode !== 'string') return o.type;
  const normalization = o.mode === 'exact' && typeof o.normalization === 'string' ? `, ${o.normalization}` : '';
  return `dynmuon (${o.mode}${normalization})`;
}

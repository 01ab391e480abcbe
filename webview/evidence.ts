/**
 * The advisor's benchmark evidence as this build knows it: the summary rows of the last
 * `npm run bench:advisor` (bundled into the script at build time, so the page needs no fetch and no
 * extra CSP source) and the URLs of its SVG plots, copied beside the bundle by esbuild.mjs.
 */
import results from '../test/bench/results/advisor.json';

export interface EvidenceRow {
  task: string;
  optimizer: string;
  n_seeds: number;
  ratio_vs_muon: number;
  ci_low: number;
  ci_high: number;
}

export interface BenchmarkEvidence {
  date: string;
  size: string;
  rows: EvidenceRow[];
}

export function benchmarkEvidence(): BenchmarkEvidence | null {
  const r = results as unknown as { meta?: { date?: string; size?: string }; rows?: EvidenceRow[] };
  if (!r?.rows?.length) return null;
  return { date: r.meta?.date ?? '', size: r.meta?.size ?? '', rows: r.rows };
}

// The script's own URL, read while it first runs (document.currentScript is null afterwards): in VS Code
// a webview resource URI, in the browser /webview/main.js on the trainer's server.
const scriptSrc = (document.currentScript as HTMLScriptElement | null)?.src ?? '';

export function evidenceImageUrl(file: string): string | null {
  if (!scriptSrc || !/^[\w.-]+\.svg$/.test(file)) return null;
  return new URL(`evidence/${file}`, scriptSrc).toString();
}

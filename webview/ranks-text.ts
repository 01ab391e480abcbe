/**
 * The Overview's words for a data-parallel run's ranks (PyTorch under torch.distributed). No DOM, so the
 * unit tests check it directly.
 */
import { fmt } from './dom.js';
import type { RunStore } from './store.js';
/**
 * A data-parallel run's ranks: how many, and which is slowest at the last step (the pace every rank waits
 * for in the gradient all-reduce), beside the fastest. One process: "1".
 */
export function ranksText(ranks: RunStore['ranks'], startedWorldSize: number | undefined): string {
  if (!ranks || ranks.rankStepMs.length === 0) return String(startedWorldSize ?? 1);
  const ms = ranks.rankStepMs;
  let slow = 0;
  let fast = 0;
  ms.forEach((v, i) => {
    if (v > ms[slow]) slow = i;
    if (v < ms[fast]) fast = i;
  });
  return `${ranks.worldSize} · slowest rank ${slow}: ${fmt(ms[slow])} ms/step (fastest rank ${fast}: ${fmt(ms[fast])} ms) at step ${ranks.step + 1}`;
}

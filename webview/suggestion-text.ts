/**
 * The words the Suggestions view puts beside a suggestion: its rule's name, how this run's races of that
 * rule went, and what a race's step count may be. No DOM, so the unit tests check it directly.
 */
import { RACE_MAX_STEPS, type AdvisorRule } from '../common/protocol.js';
import type { RaceTally } from './store.js';

export const RULE_NAMES: Record<AdvisorRule, string> = {
  instability: 'instability',
  keep_p_positive: 'keep p positive',
  move_p_negative: 'move p negative',
  p_probe: 'p-probe',
  p_model: 'mode model',
  plateau: 'plateau',
  plateau_noise: 'noise-bound plateau',
};

/** Steps a race runs unless the user asks for another number. */
export const DEFAULT_RACE_STEPS = 50;

/** "races: suggested won k of n" (and the ties, when there were any), or "not raced yet". */
export function calibrationText(rule: AdvisorRule, tally: RaceTally): string {
  if (tally.total === 0) return `not raced yet (no ${RULE_NAMES[rule]} suggestion raced in this run)`;
  const ties = tally.ties ? `, ${tally.ties} tie${tally.ties === 1 ? '' : 's'}` : '';
  return `races: suggested won ${tally.suggestedWon} of ${tally.total}${ties} (${RULE_NAMES[rule]} suggestions in this run)`;
}

/** The race's steps from the input, or why not: a whole number 1..RACE_MAX_STEPS. */
export function parseRaceSteps(text: string): { ok: true; steps: number } | { ok: false; message: string } {
  const n = Number(text.trim());
  if (text.trim() === '' || !Number.isInteger(n) || n < 1 || n > RACE_MAX_STEPS) return { ok: false, message: `race steps must be a whole number from 1 to ${RACE_MAX_STEPS}; got "${text}"` };
  return { ok: true, steps: n };
}

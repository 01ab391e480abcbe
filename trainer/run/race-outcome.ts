/**
 * A race's outcome, apart from how its branches were run (docs/algorithms.md §7.1): who won, the `race` record
 * and the ack's text. Pure, and free of TF.js, so that the host of a PyTorch run (trainer/host), whose Python
 * process runs the branches, judges and records them by the very same rules as the built-in trainer.
 */
import type { NewLogRecord, RecordOf, SuggestedChange } from '../../common/protocol.js';

/**
 * Held-out losses within this relative difference, |a − b|/max(|a|, |b|), are a tie. Both branches are
 * scored on the same examples, so the held-out set's sampling noise largely cancels in the difference;
 * 1e-3 is far above float32 rounding in a mean loss (~1e-7 relative) and well below the percent-level
 * effects suggestions are made for, so a tie means "no difference worth acting on", not "equal".
 */
export const RACE_TIE_TOLERANCE = 1e-3;

/** A branch's outcome as the `race` record holds it. */
export type RaceBranchScore = RecordOf<'race'>['baseline'];

export interface RaceBranchResult {
  score: RaceBranchScore;
  /** The training loss of each step, in order (step `start`, `start + 1`, …). */
  losses: number[];
}

export type RaceWinner = RecordOf<'race'>['winner'];

export interface RaceResult {
  /** The step index both branches started at (= steps completed). */
  start: number;
  steps: number;
  /** The change as the suggested branch made it (a schedule change starts no earlier than `start`). */
  change: SuggestedChange;
  baseline: RaceBranchResult;
  suggested: RaceBranchResult;
  winner: RaceWinner;
  tieTolerance: number;
  /** Examples the branches were scored on; null when the trainer cannot know (a script's probe()). */
  heldOutExamples: number | null;
  costMs: number;
}

/** Who won by held-out loss: lower wins unless the two are within `tolerance` of each other, relatively. */
export function raceWinner(baselineLoss: number, suggestedLoss: number, tolerance: number): RaceWinner {
  const scale = Math.max(Math.abs(baselineLoss), Math.abs(suggestedLoss));
  if (scale === 0 || Math.abs(baselineLoss - suggestedLoss) <= tolerance * scale) return 'tie';
  return suggestedLoss < baselineLoss ? 'suggested' : 'baseline';
}

/** The winner of two branches: one that diverged loses; of two that diverged, the one that lasted longer wins. */
export function branchWinner(baseline: RaceBranchScore, suggested: RaceBranchScore, tolerance: number): RaceWinner {
  const bDiverged = baseline.divergedAtStep;
  const sDiverged = suggested.divergedAtStep;
  if (bDiverged !== undefined || sDiverged !== undefined) {
    if (bDiverged === undefined) return 'baseline';
    if (sDiverged === undefined) return 'suggested';
    return bDiverged === sDiverged ? 'tie' : sDiverged > bDiverged ? 'suggested' : 'baseline';
  }
  return raceWinner(baseline.valLoss!, suggested.valLoss!, tolerance);
}

/** The `race` record of a result, for a suggestion with this id and rule. */
export function raceRecord(r: RaceResult, suggestion: { id: string; rule: RecordOf<'race'>['rule'] }): NewLogRecord {
  return {
    kind: 'race',
    step: r.start,
    suggestionId: suggestion.id,
    rule: suggestion.rule,
    steps: r.steps,
    baseline: r.baseline.score,
    suggested: r.suggested.score,
    winner: r.winner,
    tieTolerance: r.tieTolerance,
    heldOutExamples: r.heldOutExamples,
    costMs: r.costMs,
  };
}

/** The ack's detail: the winner and both held-out losses. */
export function raceDetail(r: RaceResult, id: string): string {
  const fmt = (x: number | null) => (x === null ? 'diverged' : x.toPrecision(6));
  const verdict = r.winner === 'tie' ? `tie (within ${r.tieTolerance} relative)` : `${r.winner} wins`;
  return `race ${id} over ${r.steps} step(s): ${verdict}; held-out loss baseline ${fmt(r.baseline.score.valLoss)}, suggested ${fmt(r.suggested.score.valLoss)} (${r.heldOutExamples === null ? "scored on the script's probe()" : `${r.heldOutExamples} examples`})`.slice(0, 1000);
}

/**
 * Which rank of a data-parallel run failed first, from its launcher's output (docs/python.md, "Data
 * parallel"). torch prefixes each rank's uncaught traceback with `[rankN]:`, and torchrun ends a failed launch
 * with a "Root Cause (first observed failure)" block that names the rank. When one rank dies the others fail
 * too, of the lost peer (gloo's "Connection closed by peer", NCCL aborts, torchrun's SIGTERM): those are
 * consequences, and the rank a user needs is the one whose error is not.
 *
 * The host keeps only the last 50 lines of the command's output for a crash (child.ts), and a launcher's
 * summary alone can fill them: each rank's own last lines are kept here, as they pass, bounded per rank.
 */

const RANK_LINE = /^\[rank(\d+)\]:\s?(.*)$/;
/** The last line of a Python traceback: `SomeError: message` (dotted names included). */
const ERROR_LINE = /^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b(:|$)/;
/** A rank failing because another did. */
const CONSEQUENCE = /Connection closed by peer|Connection reset by peer|remote worker crash|Broken pipe|NCCL.*(abort|timeout|error)|Signal 15|SIGTERM/i;
const ROOT_CAUSE = /Root Cause \(first observed failure\)/;
const ROOT_CAUSE_RANK = /^\s*rank\s*:\s*(\d+)/;

/** Lines kept per rank, ranks tracked, error lines remembered: the output may be anything. */
export const RANK_LINES_KEPT = 20;
const MAX_RANKS = 256;
const MAX_ERRORS = 1024;

export interface RankFailure {
  rank: number;
  /** The rank's error line (`RuntimeError: …`), when it printed one. */
  error: string | null;
  /** Its last lines, without the `[rankN]:` prefix. */
  lines: string[];
}

export class RankLines {
  private readonly byRank = new Map<number, string[]>();
  private readonly errors: { rank: number; error: string }[] = [];
  private rootCause: number | null = null;
  private inRootCause = false;

  add(line: string): void {
    const m = RANK_LINE.exec(line);
    if (m) {
      const rank = Number(m[1]);
      const text = m[2];
      let kept = this.byRank.get(rank);
      if (!kept) {
        if (this.byRank.size >= MAX_RANKS) return;
        kept = [];
        this.byRank.set(rank, kept);
      }
      kept.push(text);
      if (kept.length > RANK_LINES_KEPT) kept.shift();
      const trimmed = text.trim();
      if (ERROR_LINE.test(trimmed) && this.errors.length < MAX_ERRORS) this.errors.push({ rank, error: trimmed });
      return;
    }
    if (ROOT_CAUSE.test(line)) {
      this.inRootCause = true;
      return;
    }
    const r = this.inRootCause ? ROOT_CAUSE_RANK.exec(line) : null;
    if (r) {
      this.rootCause = Number(r[1]);
      this.inRootCause = false;
    }
  }

  /**
   * The first rank whose error is not a lost peer's; else the launcher's root cause; else the first rank that
   * printed an error. Null when the output names no rank (not a data-parallel launch).
   */
  firstFailure(): RankFailure | null {
    const cause = this.errors.find((e) => !CONSEQUENCE.test(e.error));
    const rank = cause?.rank ?? this.rootCause ?? this.errors[0]?.rank;
    if (rank === undefined) return null;
    const error = cause?.error ?? [...this.errors].reverse().find((e) => e.rank === rank)?.error ?? null;
    return { rank, error, lines: [...(this.byRank.get(rank) ?? [])] };
  }
}

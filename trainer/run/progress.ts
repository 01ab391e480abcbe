/**
 * Terminal progress: a cli-progress bar (step, loss, p, steps/s, ETA) on a terminal, and plain lines
 * at a modest rate when stdout is a pipe (the extension's output channel, CI logs).
 */
import cliProgress from 'cli-progress';
import type { ProgressReport } from './trainer.js';

const PLAIN_LINE_EVERY_MS = 2000;

function fmtP(p: number | null): string {
  return p === null ? '–' : `${p >= 0 ? '+' : ''}${p.toFixed(3)}`;
}

export class ProgressPrinter {
  private readonly bar: cliProgress.SingleBar | null;
  private lastPlain = 0;
  private valLoss: number | undefined;

  constructor(
    private readonly total: number,
    private readonly out: NodeJS.WriteStream,
  ) {
    this.bar = out.isTTY
      ? new cliProgress.SingleBar(
          {
            stream: out,
            format: ' {bar} {value}/{total} | loss {loss} | val {val} | p {p} | {rate} steps/s | ETA {eta_formatted}',
            hideCursor: true,
            etaBuffer: 50,
          },
          cliProgress.Presets.shades_classic,
        )
      : null;
  }

  update(r: ProgressReport): void {
    if (r.valLoss !== undefined) this.valLoss = r.valLoss;
    const val = this.valLoss === undefined ? '–' : this.valLoss.toFixed(4);
    if (this.bar) {
      if (!this.bar.isActive) this.bar.start(this.total, r.step);
      this.bar.update(r.step + 1, { loss: r.loss.toFixed(4), val, p: fmtP(r.p), rate: r.stepsPerSecond.toFixed(1) });
      return;
    }
    const now = Date.now();
    if (now - this.lastPlain < PLAIN_LINE_EVERY_MS && r.step + 1 !== this.total && r.valLoss === undefined) return;
    this.lastPlain = now;
    const eta = (this.total - r.step - 1) / Math.max(r.stepsPerSecond, 1e-9);
    this.out.write(`step ${r.step + 1}/${this.total}  loss ${r.loss.toFixed(4)}  val ${val}  p ${fmtP(r.p)}  ${r.stepsPerSecond.toFixed(1)} steps/s  ETA ${eta.toFixed(0)}s  [${r.state}]\n`);
  }

  /** A message line that does not break the bar. */
  log(line: string): void {
    if (this.bar?.isActive) this.bar.stop();
    this.out.write(line + '\n');
  }

  finish(line: string): void {
    this.bar?.stop();
    this.out.write(line + '\n');
  }
}

/** A word-sized uPlot line (no axes, legend or cursor) for table cells. */
import uPlot from 'uplot';
import { color } from './theme.js';

export const SPARK_WIDTH = 90;
const SPARK_HEIGHT = 22;

export class Sparkline {
  private u: uPlot | null = null;

  constructor(
    readonly el: HTMLElement,
    private readonly tint: Parameters<typeof color>[0],
  ) {}

  update(x: Float64Array, y: Float64Array): void {
    const data: uPlot.AlignedData = [x, y];
    if (this.u) {
      // batch: draw now rather than in a microtask, so the caller's time budget sees the real cost.
      const u = this.u;
      u.batch(() => u.setData(data));
      return;
    }
    this.u = new uPlot(
      {
        width: SPARK_WIDTH,
        height: SPARK_HEIGHT,
        pxAlign: false,
        cursor: { show: false },
        legend: { show: false },
        select: { show: false, left: 0, top: 0, width: 0, height: 0 },
        scales: { x: { time: false } },
        axes: [{ show: false }, { show: false }],
        series: [{}, { stroke: () => color(this.tint), width: 1, points: { show: false } }],
      },
      data,
      this.el,
    );
  }
}

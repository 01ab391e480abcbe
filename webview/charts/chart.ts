/**
 * One uPlot chart in a labelled figure: theme colours, a text summary for screen readers, vertical markers
 * (every control record: schedule edits, lr changes, pauses) and horizontal reference lines (the task's
 * loss floor), resizing with its container. Views hand it already-downsampled, aligned data.
 */
import uPlot from 'uplot';
import { debug } from '../debug.js';
import { chartFont, color, onThemeChange, type ChartColor } from './theme.js';

export interface SeriesDef {
  label: string;
  color: ChartColor;
  dash?: number[];
  width?: number;
  /** Draw straight across nulls (sparse series such as validation loss). */
  spanGaps?: boolean;
  points?: boolean;
}

export interface ChartOptions {
  /** Stable id: the debug hook's key and the DOM id. */
  id: string;
  title: string;
  xLabel: string;
  yLabel?: string;
  series: SeriesDef[];
  logX?: boolean;
  logY?: boolean;
  height?: number;
}

export interface RefLine {
  value: number;
  label: string;
}

const DEFAULT_HEIGHT = 170;

/**
 * Charts whose data changed and are not yet repainted, oldest first. A view hands every chart its data in
 * one go, but painting them all in the same frame is what made the busiest views miss frames; the frame
 * loop paints from here within a time budget instead (`paintCharts`), so each chart still repaints within
 * a few frames of its data changing and no frame carries all of them.
 */
const unpainted = new Set<Chart>();

/** Paints waiting charts, oldest first, until `budgetMs` is spent (at least one); true if some are left. */
export function paintCharts(budgetMs: number): boolean {
  const start = performance.now();
  for (const chart of unpainted) {
    unpainted.delete(chart);
    chart.paint();
    if (performance.now() - start >= budgetMs) break;
  }
  return unpainted.size > 0;
}

export class Chart {
  readonly el: HTMLElement;
  private readonly plotHost: HTMLElement;
  private readonly summaryEl: HTMLElement;
  private u: uPlot | null = null;
  private data: uPlot.AlignedData;
  markers: number[] = [];
  refLines: RefLine[] = [];

  constructor(
    parent: HTMLElement,
    private options: ChartOptions,
  ) {
    this.el = document.createElement('figure');
    this.el.className = 'chart';
    this.el.id = `chart-${options.id}`;
    const caption = document.createElement('figcaption');
    caption.textContent = options.title;
    caption.id = `${this.el.id}-title`;
    this.plotHost = document.createElement('div');
    this.plotHost.className = 'chart-plot';
    this.plotHost.setAttribute('role', 'img');
    this.plotHost.setAttribute('aria-labelledby', caption.id);
    this.summaryEl = document.createElement('p');
    this.summaryEl.className = 'chart-summary';
    this.summaryEl.id = `${this.el.id}-summary`;
    this.plotHost.setAttribute('aria-describedby', this.summaryEl.id);
    this.el.append(caption, this.plotHost, this.summaryEl);
    parent.append(this.el);
    this.data = [[], ...options.series.map(() => [])];
    new ResizeObserver(() => this.resize()).observe(this.plotHost);
    onThemeChange(() => this.rebuild());
    debug.charts[options.id] = this;
  }

  get id(): string {
    return this.options.id;
  }

  get seriesLabels(): string[] {
    return this.options.series.map((s) => s.label);
  }

  /** Plot width in CSS pixels: the number of buckets to downsample to. */
  get width(): number {
    return Math.max(50, Math.floor(this.plotHost.clientWidth || 400));
  }

  get alignedData(): uPlot.AlignedData {
    return this.data;
  }

  get summary(): string {
    return this.summaryEl.textContent ?? '';
  }

  setLogY(logY: boolean): void {
    if (this.options.logY === logY) return;
    this.options = { ...this.options, logY };
    this.rebuild();
  }

  update(data: uPlot.AlignedData, summary: string, markers: number[] = this.markers, refLines: RefLine[] = this.refLines): void {
    this.data = data;
    this.markers = markers;
    this.refLines = refLines;
    if (this.summaryEl.textContent !== summary) this.summaryEl.textContent = summary;
    unpainted.add(this);
  }

  /** Draws the latest data now (the frame loop calls this through `paintCharts`). */
  paint(): void {
    if (!this.u) this.rebuild();
    else {
      const u = this.u;
      // batch: draw now rather than in a microtask, so the frame's paint budget sees the real cost.
      u.batch(() => u.setData(this.data));
    }
  }

  private resize(): void {
    const width = this.plotHost.clientWidth;
    if (!width) return;
    if (!this.u) this.rebuild();
    else if (Math.abs(this.u.width - width) > 1) this.u.setSize({ width, height: this.options.height ?? DEFAULT_HEIGHT });
  }

  private rebuild(): void {
    const width = this.plotHost.clientWidth;
    this.u?.destroy();
    this.u = null;
    // A hidden view has no width yet; it is built when it is first shown (ResizeObserver).
    if (!width) return;
    const o = this.options;
    const axis = (label: string | undefined): uPlot.Axis => ({
      stroke: () => color('foreground'),
      grid: { stroke: () => color('lines'), width: 0.5 },
      ticks: { stroke: () => color('lines'), width: 0.5 },
      font: chartFont(),
      labelFont: chartFont(),
      label,
      labelSize: label ? 18 : 0,
      size: 48,
    });
    this.u = new uPlot(
      {
        width,
        height: o.height ?? DEFAULT_HEIGHT,
        scales: { x: { time: false, distr: o.logX ? 3 : 1 }, y: { distr: o.logY ? 3 : 1 } },
        axes: [axis(o.xLabel), axis(o.yLabel)],
        legend: { show: true, live: true },
        cursor: { drag: { x: true, y: false } },
        series: [
          { label: o.xLabel },
          ...o.series.map<uPlot.Series>((s) => ({
            label: s.label,
            stroke: () => color(s.color),
            width: s.width ?? 1.5,
            dash: s.dash,
            spanGaps: s.spanGaps ?? false,
            points: { show: s.points ?? false },
          })),
        ],
        hooks: { draw: [(u) => this.drawOverlays(u)] },
      },
      this.data,
      this.plotHost,
    );
  }

  private drawOverlays(u: uPlot): void {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    ctx.save();
    ctx.lineWidth = devicePixelRatio;
    ctx.font = chartFont();
    ctx.strokeStyle = color('marker');
    ctx.fillStyle = color('marker');
    ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
    const [xMin, xMax] = [u.scales.x.min ?? -Infinity, u.scales.x.max ?? Infinity];
    for (const step of this.markers) {
      if (step < xMin || step > xMax) continue;
      const x = Math.round(u.valToPos(step, 'x', true));
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, top + height);
      ctx.stroke();
    }
    ctx.strokeStyle = color('foreground');
    ctx.fillStyle = color('foreground');
    for (const line of this.refLines) {
      const y = Math.round(u.valToPos(line.value, 'y', true));
      if (!(y >= top && y <= top + height)) continue;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + width, y);
      ctx.stroke();
      ctx.fillText(line.label, left + 4 * devicePixelRatio, y - 3 * devicePixelRatio);
    }
    ctx.restore();
  }
}

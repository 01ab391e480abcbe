/**
 * One uPlot chart in a labelled figure: theme colours, a text summary for screen readers, vertical markers
 * (every control record: schedule edits, lr changes, pauses) and horizontal reference lines (the task's
 * loss floor), resizing with its container. Views hand it already-downsampled, aligned data, and the
 * step-axis charts of a view share one x-range (`setXRange`) instead of each fitting its own data.
 */
import uPlot from 'uplot';
import { debug } from '../debug.js';
import type { XRange } from './align.js';
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
  private readonly caption: HTMLElement;
  private readonly summaryEl: HTMLElement;
  private u: uPlot | null = null;
  private data: uPlot.AlignedData;
  markers: number[] = [];
  refLines: RefLine[] = [];
  /** The x-range the view shares between its charts; null fits this chart's own data. */
  private xRange: XRange | null = null;

  constructor(
    parent: HTMLElement,
    private options: ChartOptions,
  ) {
    this.el = document.createElement('figure');
    this.el.className = 'chart';
    this.el.id = `chart-${options.id}`;
    const caption = (this.caption = document.createElement('figcaption'));
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

  get seriesColors(): ChartColor[] {
    return this.options.series.map((s) => s.color);
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

  get title(): string {
    return this.caption.textContent ?? '';
  }

  /** Whether the latest data is drawn: the frame loop paints a few charts per frame, so data leads a little. */
  get painted(): boolean {
    return this.u !== null && !unpainted.has(this);
  }

  /** The x scale as drawn (null before the first draw), for the debug hook. */
  get xScale(): { min: number; max: number } | null {
    const x = this.u?.scales.x;
    return x?.min != null && x.max != null ? { min: x.min, max: x.max } : null;
  }

  setTitle(title: string): void {
    if (this.caption.textContent !== title) this.caption.textContent = title;
  }

  /** New series (a run joined, another layer was chosen): the data is cleared until the next update. */
  setSeries(series: SeriesDef[]): void {
    this.options = { ...this.options, series };
    this.data = [[], ...series.map(() => [])];
    this.rebuild();
  }

  /** Draws over `range` from the next paint on, whatever this chart's own data spans. */
  setXRange(range: XRange | null): void {
    if (range?.[0] === this.xRange?.[0] && range?.[1] === this.xRange?.[1]) return;
    this.xRange = range;
    unpainted.add(this);
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
      u.batch(() => {
        u.setData(this.data);
        this.applyXRange(u);
      });
    }
  }

  /** setData fits x to this chart's data; the view's shared range replaces that fit. */
  private applyXRange(u: uPlot): void {
    if (this.xRange) u.setScale('x', { min: this.xRange[0], max: this.xRange[1] });
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
        cursor: {
          drag: { x: true, y: false },
          // A double-click undoes a zoom: back to the view's shared range, not to this chart's own data.
          bind: {
            dblclick: (u, _target, handler) => (e) => {
              if (e.button !== 0) return null;
              handler(e);
              this.applyXRange(u);
              return null;
            },
          },
        },
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
    this.applyXRange(this.u);
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

/**
 * Spectrum over time as an image: one column per recorded spectrum (step), one row per singular index
 * (largest at the top), colour = log₁₀ σ on a perceptual ramp. Drawn through an ImageData buffer at data
 * resolution and scaled by CSS, so a 128 × 512 history costs one putImageData.
 */
import { debug } from '../debug.js';

/** Viridis at five stops, interpolated: readable in light, dark and high-contrast themes alike. */
const RAMP = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];

function ramp(t: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, t)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(x));
  const f = x - i;
  const [a, b] = [RAMP[i], RAMP[i + 1]];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}

export class Heatmap {
  readonly el: HTMLElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly cursor: HTMLElement;
  private readonly summaryEl: HTMLElement;
  private steps: number[] = [];
  private range: [number, number] = [0, 0];

  constructor(parent: HTMLElement, id: string, title: string) {
    this.el = document.createElement('figure');
    this.el.className = 'chart heatmap';
    this.el.id = `chart-${id}`;
    const caption = document.createElement('figcaption');
    caption.id = `${this.el.id}-title`;
    caption.textContent = title;
    const frame = document.createElement('div');
    frame.className = 'heatmap-frame';
    this.canvas = document.createElement('canvas');
    this.canvas.setAttribute('role', 'img');
    this.canvas.setAttribute('aria-labelledby', caption.id);
    this.cursor = document.createElement('div');
    this.cursor.className = 'heatmap-cursor';
    frame.append(this.canvas, this.cursor);
    this.summaryEl = document.createElement('p');
    this.summaryEl.className = 'chart-summary';
    this.summaryEl.id = `${this.el.id}-summary`;
    this.canvas.setAttribute('aria-describedby', this.summaryEl.id);
    this.el.append(caption, frame, this.summaryEl);
    parent.append(this.el);
    const self = this;
    debug.charts[id] = {
      get alignedData() {
        return [Float64Array.from(self.steps)];
      },
      markers: [],
      seriesLabels: [title],
      seriesColors: [],
      title,
      // An image scaled by CSS, not a uPlot scale.
      xScale: null,
      painted: true,
      get summary() {
        return self.summaryEl.textContent ?? '';
      },
    };
  }

  /** `columns[j]` holds the descending singular values at `steps[j]`; `highlight` marks one column. */
  update(columns: readonly Float32Array[], steps: readonly number[], highlight: number | null): void {
    this.steps = [...steps];
    const width = columns.length;
    const height = columns.reduce((m, c) => Math.max(m, c.length), 0);
    if (!width || !height) {
      this.summaryEl.textContent = 'No spectra yet.';
      this.canvas.width = 1;
      this.canvas.height = 1;
      return;
    }
    let lo = Infinity;
    let hi = -Infinity;
    for (const c of columns)
      for (const v of c)
        if (v > 0) {
          const l = Math.log10(v);
          if (l < lo) lo = l;
          if (l > hi) hi = l;
        }
    this.range = [lo, hi];
    const span = hi - lo || 1;
    if (this.canvas.width !== width) this.canvas.width = width;
    if (this.canvas.height !== height) this.canvas.height = height;
    const ctx = this.canvas.getContext('2d')!;
    const image = ctx.createImageData(width, height);
    const px = image.data;
    for (let j = 0; j < width; j++) {
      const c = columns[j];
      for (let i = 0; i < height; i++) {
        const o = (i * width + j) * 4;
        const v = c[i];
        if (!(v > 0)) continue; // transparent: no value (top-k spectra, zero σ)
        const [r, g, b] = ramp((Math.log10(v) - lo) / span);
        px[o] = r;
        px[o + 1] = g;
        px[o + 2] = b;
        px[o + 3] = 255;
      }
    }
    ctx.putImageData(image, 0, 0);
    this.cursor.hidden = highlight === null;
    if (highlight !== null) this.cursor.style.left = `${((highlight + 0.5) / width) * 100}%`;
    this.summaryEl.textContent = `${width} spectra from step ${steps[0]} to ${steps[width - 1]}, ${height} singular values each; colour is log₁₀ σ from ${this.range[0].toFixed(2)} (dark) to ${this.range[1].toFixed(2)} (bright).`;
  }
}

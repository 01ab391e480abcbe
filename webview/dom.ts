/** Tiny DOM helpers: every piece of text goes in through textContent, never as HTML. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Sets text only when it changed, so a redraw at 60 Hz touches no unchanged DOM. */
export function setText(e: Element, text: string): void {
  if (e.textContent !== text) e.textContent = text;
}

/** Numbers as people read them in a table: 4 significant digits, exponent form when tiny or huge. */
export function fmt(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (!Number.isFinite(v)) return v > 0 ? '∞' : '−∞';
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return Number(v.toPrecision(4)).toString();
}

/** A compact, stable rendering of a control record's old/new value (a spec, a number, a state). */
export function describeValue(v: unknown): string {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'number') return fmt(v);
  if (typeof v === 'string') return v;
  const o = v as Record<string, unknown>;
  if (typeof o.type === 'string') {
    const params = Object.entries(o)
      .filter(([k]) => k !== 'type')
      .map(([k, x]) => `${k}=${typeof x === 'object' ? describeValue(x) : typeof x === 'number' ? fmt(x) : String(x)}`);
    return `${o.type}(${params.join(', ')})`;
  }
  if ('schedule' in o) return `${describeValue(o.schedule)} from step ${String(o.fromStep)}`;
  return JSON.stringify(v);
}

/** A table with an optional caption and a header row naming its columns; rows go into `body`. */
export function dataTable(attrs: Record<string, string>, caption: string | HTMLElement | null, columns: readonly string[]): { table: HTMLTableElement; body: HTMLTableSectionElement } {
  const table = h('table', attrs);
  const head = h('tr');
  for (const c of columns) head.append(h('th', { scope: 'col' }, c));
  const thead = h('thead');
  thead.append(head);
  const body = h('tbody');
  if (caption !== null) table.append(typeof caption === 'string' ? h('caption', {}, caption) : caption);
  table.append(thead, body);
  return { table, body };
}

/** A body row of text cells. */
export function textRow(cells: readonly string[]): HTMLTableRowElement {
  const tr = h('tr');
  for (const text of cells) tr.append(h('td', {}, text));
  return tr;
}

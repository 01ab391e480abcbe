/**
 * Chart colours come from the editor's theme variables (`--vscode-charts-*`), read from computed style, so
 * charts follow light, dark and high-contrast themes; the cache is refreshed when VS Code switches theme
 * (it changes the body's class), and every chart redraws.
 */
export const SERIES_COLORS = ['blue', 'orange', 'green', 'purple', 'red', 'yellow'] as const;
export type ChartColor = (typeof SERIES_COLORS)[number] | 'foreground' | 'lines' | 'marker';

const VARIABLE: Record<ChartColor, string> = {
  blue: '--vscode-charts-blue',
  orange: '--vscode-charts-orange',
  green: '--vscode-charts-green',
  purple: '--vscode-charts-purple',
  red: '--vscode-charts-red',
  yellow: '--vscode-charts-yellow',
  foreground: '--vscode-charts-foreground',
  lines: '--vscode-charts-lines',
  marker: '--vscode-editorWarning-foreground',
};

let cache: Partial<Record<ChartColor, string>> = {};
const listeners = new Set<() => void>();

export function color(c: ChartColor): string {
  return (cache[c] ??= getComputedStyle(document.body).getPropertyValue(VARIABLE[c]).trim() || 'gray');
}

export function onThemeChange(fn: () => void): void {
  listeners.add(fn);
}

export function watchTheme(): void {
  new MutationObserver(() => {
    cache = {};
    listeners.forEach((fn) => fn());
  }).observe(document.body, { attributes: true, attributeFilter: ['class', 'data-vscode-theme-kind'] });
}

/** Canvas font matching the editor's UI font. */
export function chartFont(): string {
  const s = getComputedStyle(document.body);
  return `${s.getPropertyValue('--vscode-font-size').trim() || '12px'} ${s.getPropertyValue('--vscode-font-family').trim() || 'sans-serif'}`;
}

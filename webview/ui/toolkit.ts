/**
 * The one place that knows about `@vscode/webview-ui-toolkit` (deprecated upstream, pinned at 1.4.0): it
 * registers only the components the dashboard uses and hands out small factories, so swapping to
 * `@vscode-elements/elements` later touches this file alone. Labels are set as text, never as HTML.
 */
import { provideVSCodeDesignSystem, vsCodeButton, vsCodeCheckbox, vsCodeDropdown, vsCodeOption, vsCodeTextField } from '@vscode/webview-ui-toolkit';

provideVSCodeDesignSystem().register(vsCodeButton(), vsCodeCheckbox(), vsCodeDropdown(), vsCodeOption(), vsCodeTextField());

/** A toolkit control as the dashboard sees it: an element with `disabled` and `value`. */
export type Control = HTMLElement & { disabled: boolean; value: string };
export type Checkbox = HTMLElement & { disabled: boolean; checked: boolean };

export function button(label: string, onClick: () => void, o: { ariaLabel?: string; secondary?: boolean; id?: string } = {}): Control {
  const b = document.createElement('vscode-button') as Control;
  b.textContent = label;
  if (o.id) b.id = o.id;
  if (o.secondary) b.setAttribute('appearance', 'secondary');
  b.setAttribute('aria-label', o.ariaLabel ?? label);
  b.addEventListener('click', () => {
    if (!b.disabled) onClick();
  });
  return b;
}

export function textField(label: string, value: string, o: { id?: string; size?: number; onInput?: (v: string) => void } = {}): Control {
  const f = document.createElement('vscode-text-field') as Control;
  f.textContent = label;
  f.setAttribute('value', value);
  f.setAttribute('aria-label', label);
  if (o.id) f.id = o.id;
  if (o.size) f.setAttribute('size', String(o.size));
  const onInput = o.onInput;
  if (onInput) f.addEventListener('input', () => onInput(f.value));
  return f;
}

export function dropdown(label: string, options: readonly { value: string; label: string }[], value: string, onChange: (v: string) => void, id?: string): Control {
  const d = document.createElement('vscode-dropdown') as Control;
  d.setAttribute('aria-label', label);
  if (id) d.id = id;
  setOptions(d, options, value);
  d.addEventListener('change', () => onChange(d.value));
  return d;
}

/** Replaces a dropdown's options (e.g. when layers appear), keeping `value` selected. */
export function setOptions(d: Control, options: readonly { value: string; label: string }[], value: string): void {
  d.replaceChildren(
    ...options.map((o) => {
      const opt = document.createElement('vscode-option');
      opt.setAttribute('value', o.value);
      opt.textContent = o.label;
      if (o.value === value) opt.setAttribute('selected', '');
      return opt;
    }),
  );
  d.value = value;
}

export function checkbox(label: string, checked: boolean, onChange: (checked: boolean) => void, id?: string): Checkbox {
  const c = document.createElement('vscode-checkbox') as Checkbox;
  c.textContent = label;
  if (id) c.id = id;
  if (checked) c.setAttribute('checked', '');
  c.addEventListener('change', () => onChange(c.checked));
  return c;
}

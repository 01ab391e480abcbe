/**
 * Suggestions from the advisor, with their evidence and Apply / Dismiss. The advisor does not emit
 * suggestions yet (the protocol has no record for them), so the view says so plainly.
 */
import { h } from '../dom.js';
import { emptyNote, type View } from './view.js';

export class SuggestionsView implements View {
  readonly id = 'suggestions' as const;
  readonly title = 'Suggestions';
  readonly el = h('section', { class: 'view', 'aria-label': 'Suggestions' });

  constructor() {
    this.el.append(h('h2', {}, 'Suggestions'), emptyNote('No suggestions yet — the advisor is not running.'));
  }

  render(): void {}
}

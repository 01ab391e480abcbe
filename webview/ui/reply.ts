/** The answer to one control's last command, next to it: sent…, the ack with its step, or the error. */
import type { Reply } from '../store.js';

export class ReplyStatus {
  readonly el: HTMLElement;

  constructor(id: string) {
    this.el = document.createElement('span');
    this.el.className = 'reply';
    this.el.id = id;
    this.el.setAttribute('role', 'status');
    this.el.setAttribute('aria-live', 'polite');
  }

  sent(what: string): void {
    this.el.dataset.state = 'sent';
    this.el.textContent = `${what}: sent…`;
  }

  show(what: string, reply: Reply): void {
    this.el.dataset.state = reply.type;
    this.el.textContent =
      reply.type === 'ack'
        ? `${what}: done at step ${reply.step}${reply.detail ? ` — ${reply.detail}` : ''}`
        : `${what} refused: ${reply.message}${reply.code ? ` (${reply.code})` : ''}`;
  }
}

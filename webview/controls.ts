/**
 * Run controls, always on top: pause, resume, stop, step N, checkpoint. Each shows the reply to its own
 * last click next to it, and is enabled only when the trainer would accept it (pause while running,
 * resume and step while paused), so a disabled button explains the run's state rather than an error.
 */
import type { Command } from '../common/protocol.js';
import type { Commands } from './commands.js';
import { h } from './dom.js';
import type { RunStore } from './store.js';
import { button, textField, type Control } from './ui/toolkit.js';
import { ReplyStatus } from './ui/reply.js';

/** Whether the run takes commands at all: alive, and reachable. */
export function canCommand(run: RunStore): boolean {
  return (run.state === 'running' || run.state === 'paused') && run.connection !== 'offline' && run.connection !== 'ended';
}

interface Item {
  control: Control;
  enabled: (run: RunStore) => boolean;
}

export class ControlsBar {
  readonly el = h('div', { class: 'controls', role: 'toolbar', 'aria-label': 'Run controls' });
  private readonly items: Item[] = [];
  private readonly stepCount: Control;

  constructor(
    private readonly commands: Commands,
    private readonly run: () => RunStore | null,
  ) {
    this.stepCount = textField('Steps', '1', { id: 'step-count', size: 4 });
    this.add('pause', 'Pause', () => ({ kind: 'pause' }), (r) => r.state === 'running');
    this.add('resume', 'Resume', () => ({ kind: 'resume' }), (r) => r.state === 'paused');
    const stepGroup = this.add('step', 'Step', () => ({ kind: 'step', n: Math.max(1, Math.min(100000, Math.round(Number(this.stepCount.value) || 1))) }), (r) => r.state === 'paused', 'Step: run N steps, then pause');
    stepGroup.prepend(this.stepCount);
    this.items.push({ control: this.stepCount, enabled: (r) => canCommand(r) && r.state === 'paused' });
    this.add('stop', 'Stop', () => ({ kind: 'stop' }), () => true, 'Stop the run (checkpoints first)');
    this.add('checkpoint', 'Checkpoint', () => ({ kind: 'checkpoint' }), () => true, 'Checkpoint: write one now');
  }

  private add(id: string, label: string, make: () => Command, when: (run: RunStore) => boolean, ariaLabel?: string): HTMLElement {
    const reply = new ReplyStatus(`reply-${id}`);
    const control = button(label, () => {
      const run = this.run();
      if (!run) return;
      const command = make();
      reply.sent(label);
      this.commands.send(run.runId, command, (r) => reply.show(label, r));
    }, { id: `control-${id}`, ariaLabel, secondary: id !== 'pause' && id !== 'resume' });
    const group = h('span', { class: 'control-group' });
    group.append(control, reply.el);
    this.el.append(group);
    this.items.push({ control, enabled: (r) => canCommand(r) && when(r) });
    return group;
  }

  render(): void {
    const run = this.run();
    for (const item of this.items) {
      const on = !!run && item.enabled(run);
      if (item.control.disabled === on) item.control.disabled = !on;
    }
  }
}

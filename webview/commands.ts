/**
 * Sends commands with a fresh id each and routes the trainer's reply (ack or error) back to whoever sent
 * it, so every control can show the answer to its own click.
 */
import type { Command } from '../common/protocol.js';
import type { Host } from './host.js';
import type { Reply, Store } from './store.js';

export type ReplyHandler = (reply: Reply) => void;

export class Commands {
  private readonly pending = new Map<string, ReplyHandler>();
  private counter = 0;
  private readonly prefix = Math.random().toString(36).slice(2, 8);

  constructor(
    private readonly host: Host,
    store: Store,
  ) {
    store.onReply((_runId, reply) => {
      const handler = reply.id ? this.pending.get(reply.id) : undefined;
      if (!handler || !reply.id) return;
      this.pending.delete(reply.id);
      handler(reply);
    });
  }

  send(runId: string, command: Command, onReply: ReplyHandler): string {
    const id = `dash-${this.prefix}-${++this.counter}`;
    this.pending.set(id, onReply);
    this.host.post({ type: 'command', runId, id, command });
    return id;
  }
}

/**
 * Commands from every client go through one queue, so they reach the trainer strictly in arrival order
 * and one at a time, whichever socket they came from. Each is answered with an ack or a typed error; a
 * handler that throws never takes the server down.
 */
import { isMuonscopeError, type MuonscopeErrorCode } from '../../common/errors.js';
import { ERROR_CODES, type Command, type ProtocolErrorCode, type ServerMessage } from '../../common/protocol.js';

export interface IncomingCommand {
  id: string;
  command: Command;
  /** Who asked, for the audit trail: the client's `source`, else its connection id. */
  source: string;
}

export interface CommandResult {
  step: number;
  detail?: string;
}

export type CommandHandler = (msg: IncomingCommand, clientId: string) => Promise<CommandResult>;

const INVALID_COMMAND_CODES: ReadonlySet<MuonscopeErrorCode> = new Set(['INVALID_ARGUMENT', 'P_OUT_OF_RANGE', 'UNKNOWN_SCHEDULE', 'INVALID_HYPERPARAMETER']);

/**
 * The wire code for what a handler threw. The trainer can name one itself with
 * `new MuonscopeError(code, msg, { protocolCode: 'RUN_ENDED' })`, for refusals the trainer's own codes
 * cannot tell apart.
 */
export function protocolCodeFor(e: unknown): ProtocolErrorCode {
  if (!isMuonscopeError(e)) return 'INTERNAL';
  const override = e.details.protocolCode;
  if (typeof override === 'string' && (ERROR_CODES as readonly string[]).includes(override)) return override as ProtocolErrorCode;
  if (INVALID_COMMAND_CODES.has(e.code)) return 'INVALID_COMMAND';
  if (e.code === 'INVALID_STATE') return 'NOT_ALLOWED_NOW';
  return 'INTERNAL';
}

const clip = (s: string, max: number) => (s.length > max ? `${s.slice(0, max - 1)}…` : s);

export class CommandQueue {
  private tail: Promise<void> = Promise.resolve();
  private count = 0;

  constructor(
    private readonly handler: CommandHandler,
    private readonly log: (line: string) => void,
  ) {}

  /** Commands received so far (queued, running or answered). */
  get received(): number {
    return this.count;
  }

  enqueue(msg: IncomingCommand, clientId: string, reply: (m: ServerMessage) => void): void {
    this.count++;
    this.tail = this.tail.then(() => this.run(msg, clientId, reply));
  }

  /** Never rejects: the queue must keep going after any failure. */
  private async run(msg: IncomingCommand, clientId: string, reply: (m: ServerMessage) => void): Promise<void> {
    let answer: ServerMessage;
    try {
      const result = await this.handler(msg, clientId);
      if (!result || !Number.isSafeInteger(result.step)) throw new Error(`command handler returned no integer step for ${msg.command.kind}`);
      answer = { type: 'ack', id: msg.id, kind: msg.command.kind, step: result.step };
      if (typeof result.detail === 'string') answer.detail = clip(result.detail, 1000);
    } catch (e) {
      const code = protocolCodeFor(e);
      const message = e instanceof Error ? e.message : String(e);
      if (code === 'INTERNAL') this.log(`command ${msg.id} (${msg.command.kind}) from ${clientId} failed: ${e instanceof Error ? (e.stack ?? message) : message}`);
      answer = { type: 'error', id: msg.id, code, message: clip(message || code, 2000) };
    }
    try {
      reply(answer);
    } catch (e) {
      this.log(`could not answer command ${msg.id}: ${String(e)}`);
    }
  }
}

/**
 * Client commands for a Python run (docs/python.md §3): forwarded to the Python process, answered with
 * what it answers, so a client sees the same acks and error codes as from the TS trainer. The advisor's
 * suggestions live in the host's log, so the host resolves them: `apply_suggestion` goes to Python as the
 * concrete `set_lr`/`set_schedule` it stands for, and its `suggestion_outcome` is logged here once Python
 * has answered; `dismiss_suggestion` never leaves the host.
 *
 * One command at a time: each waits for Python's answer before the next is sent, as the TS trainer's queue
 * applies them in order.
 */
import { MuonscopeError } from '../../common/errors.js';
import { ERROR_CODES, type Command, type LogRecord, type NewLogRecord, type ProtocolErrorCode, type RunState, type SuggestedChange } from '../../common/protocol.js';
import type { SuggestionBook } from '../advisor/advisor.js';
import type { CommandResult, IncomingCommand } from '../server/commands.js';
import { branchWinner, raceDetail, raceRecord, RACE_TIE_TOLERANCE, type RaceResult } from '../run/race-outcome.js';
import { checkedCommand, validateRaceResult, type HostMessage, type RaceMeasured, type RaceParams } from './channel-messages.js';

const FINAL_STATES: ReadonlySet<RunState> = new Set(['finished', 'stopped', 'crashed']);

/** A refusal with the protocol code the client must see (commands.ts `protocolCodeFor` reads it). */
function refusal(code: ProtocolErrorCode, message: string, details: Record<string, unknown> = {}): MuonscopeError {
  return new MuonscopeError(code === 'INVALID_COMMAND' ? 'INVALID_ARGUMENT' : 'INVALID_STATE', message, { ...details, protocolCode: code });
}

export interface BridgeDeps {
  /** Sends to the connected Python process; false when none is connected. */
  send: (message: HostMessage) => boolean;
  append: (record: NewLogRecord) => LogRecord;
  /** The advisor's book of suggestions (built from the log). */
  suggestions: SuggestionBook;
}

interface Waiting {
  kind: Command['kind'];
  resolve: (r: { step: number; detail?: string }) => void;
  reject: (e: Error) => void;
}

export class CommandBridge {
  private tail: Promise<unknown> = Promise.resolve();
  private readonly waiting = new Map<string, Waiting>();
  /** Races sent to Python as `measure` `race`, by measure id. */
  private readonly racing = new Map<string, { resolve: (m: RaceMeasured) => void; reject: (e: Error) => void }>();
  private races = 0;
  /** Steps completed, from the records Python sent: where host-side commands take effect. */
  private nextStep = 0;
  private state: RunState | null = null;
  private ended: string | null = null;

  constructor(private readonly deps: BridgeDeps) {}

  /** Follows the log: the step count and the run's state. */
  observe(r: LogRecord): void {
    if (r.kind === 'run_started') this.nextStep = r.step;
    else if (r.kind === 'step') this.nextStep = Math.max(this.nextStep, r.step + 1);
    else if (r.kind === 'state') this.state = r.state;
  }

  get step(): number {
    return this.nextStep;
  }

  get runState(): RunState | null {
    return this.state;
  }

  /** Queues one command; resolves with the ack's step and detail, rejects with a typed refusal. */
  handle(msg: IncomingCommand): Promise<CommandResult> {
    const result = this.tail.then(() => this.run(msg));
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Python answered command `id`; false when no command of that id is waiting. */
  answer(id: string, answer: { step: number; detail?: string } | { code: string; message: string }): boolean {
    const w = this.waiting.get(id);
    if (!w) return false;
    this.waiting.delete(id);
    if ('step' in answer) w.resolve(answer);
    else {
      const code = (ERROR_CODES as readonly string[]).includes(answer.code) ? (answer.code as ProtocolErrorCode) : 'INTERNAL';
      w.reject(refusal(code, answer.message || code, { refusedByPython: true, ...(code === 'INTERNAL' && answer.code !== 'INTERNAL' ? { pythonCode: answer.code } : {}) }));
    }
    return true;
  }

  /** The Python process went away: every command still waiting gets an answer now. */
  disconnected(exited: boolean): void {
    for (const [id, w] of this.waiting) {
      const message = exited
        ? `the Python process exited before answering ${w.kind}; the run takes no more commands`
        : `the Python process disconnected before answering ${w.kind}; it may have taken effect (see the log's control records)`;
      w.reject(refusal(exited ? 'RUN_ENDED' : 'NOT_ALLOWED_NOW', message, { id }));
    }
    this.waiting.clear();
    for (const [, w] of this.racing) w.reject(refusal(exited ? 'RUN_ENDED' : 'NOT_ALLOWED_NOW', `the Python process ${exited ? 'exited' : 'disconnected'} before answering the race; its state is as it was before the race`));
    this.racing.clear();
  }

  /** The run is over (the process exited): later commands are refused as RUN_ENDED. */
  end(state: string): void {
    this.ended = state;
    this.disconnected(true);
  }

  private async run(msg: IncomingCommand): Promise<CommandResult> {
    const { command } = msg;
    if (this.ended !== null || (this.state && FINAL_STATES.has(this.state))) {
      throw refusal('RUN_ENDED', `the run has ${this.ended ?? this.state}; it takes no more commands`);
    }
    switch (command.kind) {
      case 'dismiss_suggestion': {
        const s = this.pending(command.id);
        const step = this.nextStep;
        this.deps.append({ kind: 'suggestion_outcome', step, id: s.id, outcome: 'dismissed', source: msg.source, reason: command.reason ?? '' });
        return { step, detail: `dismissed ${s.id}` };
      }
      case 'race': {
        // Python runs both branches (muonscope/race.py) and puts its state back; the host judges them by the
        // built-in trainer's rule and logs the record, as for any run. No control record: a race changes nothing.
        if (this.state !== 'paused') throw refusal('NOT_ALLOWED_NOW', `"race" compares branches while paused; the run is ${this.state ?? 'starting'}`);
        const s = this.pending(command.id);
        const change = s.change.kind === 'set_schedule' ? (concreteSchedule(s.change, this.nextStep, `race ${s.id}`) as SuggestedChange) : s.change;
        const m = await this.measure({ steps: command.steps, change });
        const result: RaceResult = {
          start: m.start,
          steps: m.steps,
          change,
          baseline: { score: m.baseline, losses: [] },
          suggested: { score: m.suggested, losses: [] },
          winner: branchWinner(m.baseline, m.suggested, RACE_TIE_TOLERANCE),
          tieTolerance: RACE_TIE_TOLERANCE,
          heldOutExamples: m.heldOutExamples,
          costMs: m.costMs,
        };
        this.deps.append(raceRecord(result, s));
        return { step: m.start, detail: raceDetail(result, s.id) };
      }
      case 'apply_suggestion': {
        const s = this.pending(command.id);
        const reason = command.reason ?? `suggestion ${s.id}: ${s.title}`.slice(0, 500);
        // A schedule change meant for a step Python may already have passed starts at its next step (no
        // fromStep): never backdated, and never refused for a step count the host saw a moment late.
        const change = s.change.kind === 'set_schedule' ? concreteSchedule(s.change, this.nextStep, reason) : { ...s.change, reason };
        let answer: { step: number; detail?: string };
        try {
          answer = await this.forward(msg.id, checkedCommand(change), msg.source);
        } catch (e) {
          // Only Python's own refusal is known to have changed nothing. With no process connected the
          // suggestion stays pending (that passes); after a lost connection its outcome is unknown.
          if (e instanceof MuonscopeError && e.details.refusedByPython === true) {
            this.deps.append({ kind: 'suggestion_outcome', step: this.nextStep, id: s.id, outcome: 'refused', source: msg.source, reason: e.message.slice(0, 500) });
          }
          throw e;
        }
        this.deps.append({ kind: 'suggestion_outcome', step: answer.step, id: s.id, outcome: 'applied', source: msg.source, reason: command.reason ?? '' });
        return { step: answer.step, detail: `applied ${s.id}${answer.detail ? `; ${answer.detail}` : ''}`.slice(0, 1000) };
      }
      default:
        return this.forward(msg.id, command, msg.source);
    }
  }

  /** Python's answer to a `race` measure; false when no race of that id is waiting. A malformed answer is refused here. */
  measured(id: string, result: unknown): { known: false } | { known: true; issue?: { path: string; message: string } } {
    const w = this.racing.get(id);
    if (!w) return { known: false };
    this.racing.delete(id);
    const checked = validateRaceResult(result);
    if (checked.ok) {
      w.resolve(checked.value);
      return { known: true };
    }
    const issue = checked.issues[0];
    w.reject(refusal('INTERNAL', `the Python process answered the race with a malformed result (${issue.path}: ${issue.message}); nothing was logged`));
    return { known: true, issue };
  }

  /** Python refused a `race` measure (nothing ran); false when no race of that id is waiting. */
  measureRefused(id: string, code: string, message: string): boolean {
    const w = this.racing.get(id);
    if (!w) return false;
    this.racing.delete(id);
    const known = (ERROR_CODES as readonly string[]).includes(code) ? (code as ProtocolErrorCode) : 'INTERNAL';
    w.reject(refusal(known, message || code, { refusedByPython: true }));
    return true;
  }

  private measure(params: RaceParams): Promise<RaceMeasured> {
    const id = `host-race-${++this.races}`;
    return new Promise((resolve, reject) => {
      this.racing.set(id, { resolve, reject });
      if (!this.deps.send({ type: 'measure', id, what: 'race', params })) {
        this.racing.delete(id);
        reject(refusal('NOT_ALLOWED_NOW', 'no Python process is connected to this run; race is sent to it once it has said hello'));
      }
    });
  }

  private forward(id: string, command: Command, source: string): Promise<{ step: number; detail?: string }> {
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { kind: command.kind, resolve, reject });
      if (!this.deps.send({ type: 'command', id, command, source })) {
        this.waiting.delete(id);
        reject(refusal('NOT_ALLOWED_NOW', `no Python process is connected to this run${this.nextStep === 0 ? ' yet' : ''}; ${command.kind} is forwarded to it once it has said hello`));
      }
    });
  }

  private pending(id: string) {
    const s = this.deps.suggestions.get(id);
    if (s) return s;
    const outcome = this.deps.suggestions.outcome(id);
    if (outcome) throw refusal('NOT_ALLOWED_NOW', `suggestion "${id}" was already ${outcome.outcome} at step ${outcome.step}`);
    throw refusal('INVALID_COMMAND', `no suggestion "${id}" in this run`, { id });
  }
}

function concreteSchedule(change: Extract<Command, { kind: 'set_schedule' }>, nextStep: number, reason: string): Command {
  const { fromStep, ...rest } = change;
  return fromStep !== undefined && fromStep > nextStep ? { ...rest, fromStep, reason } : { ...rest, reason };
}

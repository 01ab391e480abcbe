/**
 * The host of a PyTorch run (`muonscope run`, docs/python.md): the run folder, the log, the WebSocket
 * server with replay and the advisor, exactly as `train` has them, with the training done by a child
 * process that talks to the host over the channel. Clients cannot tell the difference: same hello,
 * records, acks and error codes. Every record from Python passes the run log's validation (the log
 * writer stamps and checks it) or is refused; the host adds the advisor's suggestions and, when the
 * process dies, the crash.
 */
import { randomUUID } from 'node:crypto';
import { MuonscopeError, isMuonscopeError } from '../../common/errors.js';
import { PROTOCOL_VERSION, type LogRecord, type NewLogRecord, type RunState } from '../../common/protocol.js';
import { removeTrainerInfo, writeTrainerInfo, type RunPaths } from '../../common/run-folder/layout.js';
import { RunLog } from '../../common/run-folder/log.js';
import { Advisor } from '../advisor/advisor.js';
import type { RunConfig } from '../run/config.js';
import { createRunDir } from '../run/new-run-dir.js';
import { advisorOptions } from '../run/session.js';
import { dashboardHandler } from '../server/dashboard-page.js';
import { generateToken, startServer, type TrainerServer } from '../server/server.js';
import { AttachedProcess } from './attached.js';
import { startChannel, type Channel, type Peer } from './channel.js';
import { recordIssues, type PythonMessage } from './channel-messages.js';
import { describeExit, SupervisedChild, type ChildExit } from './child.js';
import { CommandBridge } from './command-bridge.js';
import { ModeRequests } from './mode-requests.js';

export interface HostOptions {
  config: RunConfig;
  runsRoot: string;
  /** The WebSocket server's address (127.0.0.1 and a free port unless given). */
  host?: string;
  port?: number;
  /** The training command and its arguments (`run -- COMMAND…`)… */
  command?: string;
  args?: string[];
  /** …or the pid of a training process that started this host itself and connects to it (`run
   * --attach-pid PID`, docs/python.md §4): only that process may connect, and the run ends when it
   * says bye and closes its connection, or when it is gone. */
  attachPid?: number;
  /** Where the command's output is passed through to (default: the host's stdout and stderr). */
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  /** The host's own messages (default: stderr). */
  onLine?: (line: string) => void;
  /** The environment the command starts from (default: the host's). */
  env?: NodeJS.ProcessEnv;
}

export interface HostResult {
  /** The run's final state as logged. */
  state: RunState | null;
  /** The command died (or could not start): the run is logged as crashed. */
  crashed: boolean;
  exit: ChildExit;
}

export interface HostSession {
  runId: string;
  paths: RunPaths;
  url: string;
  token: string;
  dashboardUrl: string;
  /** MUONSCOPE_CHANNEL: `127.0.0.1:PORT`. */
  channel: string;
  /** MUONSCOPE_CHANNEL_TOKEN. */
  channelToken: string;
  /** Starts the command (once); `done` follows it. */
  launch(): void;
  /** SIGINT/SIGTERM to the host: the first is forwarded to the command, a second kills it. An attached
   * process is never signalled: the host ends alone and the training goes on without it. */
  signal(signal: NodeJS.Signals): void;
  childPid(): number | undefined;
  /** Resolves when the command has exited and everything is closed. */
  done: Promise<HostResult>;
}

/** Kinds only the host writes: the advisor's book must follow from its own records alone. */
const HOST_KINDS: ReadonlySet<string> = new Set(['suggestion', 'suggestion_outcome']);
const FINAL: ReadonlySet<string> = new Set(['finished', 'stopped', 'crashed']);
const clip = (s: string, max: number) => (s.length > max ? `${s.slice(0, max - 1)}…` : s);
/** The end of a text that must fit `max` characters: the last lines matter most after a crash. */
const clipStart = (s: string, max: number) => (s.length <= max ? s : max > 0 ? `…${s.slice(s.length - max + 1)}` : '');

export async function startHost(opts: HostOptions): Promise<HostSession> {
  const { config } = opts;
  if ((opts.command === undefined) === (opts.attachPid === undefined)) throw new MuonscopeError('INVALID_ARGUMENT', 'the host needs either a command to start or the pid of a process to attach to, not both');
  const onLine = opts.onLine ?? ((line: string) => process.stderr.write(`${line}\n`));
  const paths = createRunDir(opts.runsRoot, config);
  const runId = randomUUID();
  const log = new RunLog(paths.log);

  const advisorSettings = advisorOptions(config);
  const advisor = new Advisor({ cooldownSteps: advisorSettings.cooldownSteps, maxAge: advisorSettings.maxAge });
  let peer: Peer | undefined;
  const bridge = new CommandBridge({ send: (m) => (peer?.open ? (peer.send(m), true) : false), append: (r) => log.append(r), suggestions: advisor.book });
  const step = () => bridge.step;
  // The mode probe's measurements are Python's; the mode model and the p_model record are the host's.
  const modes = new ModeRequests({ send: (m) => (peer?.open ? (peer.send(m), true) : false), append: (r) => log.append(r), step, settings: { ...advisorSettings, budget: { adaptive: config.diagnostics.adaptive, budgetPct: config.diagnostics.budgetPct } } });
  // Listeners only read: appending from inside one would reach later listeners out of seq order.
  const unsubscribe = log.subscribe((r) => {
    advisor.ingest(r);
    bridge.observe(r);
    modes.observe(r);
  });

  const alert = (level: 'warning' | 'error', code: string, message: string) => log.append({ kind: 'alert', step: step(), level, code, message: clip(message, 2000) });

  /** After each of Python's step records, as the TS trainer's advisor runs after each step. */
  const advise = (at: number) => {
    if (advisorSettings.mode === 'off') return;
    let records: NewLogRecord[];
    try {
      records = advisor.evaluate(at);
    } catch (e) {
      alert('warning', 'OBSERVER_FAILED', `the advisor failed at step ${at} (training goes on): ${String((e as Error)?.message ?? e)}`);
      return;
    }
    for (const r of records) {
      log.append(r);
      if (advisorSettings.mode === 'auto' && r.kind === 'suggestion' && r.confidence >= advisorSettings.autoMinConfidence) {
        const command = { kind: 'apply_suggestion' as const, id: r.id, reason: clip(`auto: ${r.title}`, 500) };
        bridge.handle({ id: `auto-${r.id}`.slice(0, 64), command, source: 'advisor (auto)' }).catch(() => undefined);
      }
    }
  };

  const refuseRecord = (from: Peer, kind: string, path: string, message: string) => {
    from.send({ type: 'error', code: 'BAD_RECORD', message: clip(message, 2000), path: clip(`/record${path === '/' ? '' : path}`, 500) });
    alert('warning', 'BAD_RECORD', `a ${clip(kind, 40)} record from the Python process was refused (not logged): ${message}`);
  };

  const intake = (from: Peer, record: Record<string, unknown> & { kind: string }) => {
    if (HOST_KINDS.has(record.kind)) return refuseRecord(from, record.kind, '/kind', `${record.kind} records are the host's (its advisor writes them)`);
    // run_started's host fields: the run's id, the protocol and, in the script's config (what it runs: name,
    // steps, its optimizer as the optimizer reports itself), the settings the host applies: the advisor's
    // (it runs here) and the command. The host's own defaults for the TF.js trainer (model, task, batch)
    // describe nothing in a torch run, and the label, the runs tree and the advisor read this config.
    const full = record.kind === 'run_started' ? { ...record, runId, protocol: PROTOCOL_VERSION, config: runConfigOf(record.config) } : record;
    let stamped: LogRecord;
    try {
      stamped = log.append(full as unknown as NewLogRecord);
    } catch (e) {
      if (!isMuonscopeError(e, 'INVALID_ARGUMENT')) throw e;
      const issues = recordIssues({ ...full, seq: log.lastSeq() + 1, t: Date.now() });
      return refuseRecord(from, record.kind, issues[0].path, issues.map((i) => `${i.path}: ${i.message}`).join('; '));
    }
    if (stamped.kind === 'step') {
      advise(stamped.step);
      modes.afterStep(stamped.step);
    }
  };

  const runConfigOf = (script: unknown) => ({
    ...(script !== null && typeof script === 'object' && !Array.isArray(script) ? script : {}),
    advisor: config.advisor,
    ...(config.command !== undefined ? { command: config.command } : {}),
  });

  let sawBye: string | null = null;
  let child: SupervisedChild | AttachedProcess | undefined;
  const onMessage = (from: Peer, m: PythonMessage) => {
    switch (m.type) {
      case 'record':
        return intake(from, m.record as Record<string, unknown> & { kind: string });
      case 'ack':
      case 'refused':
        if (m.type === 'refused' && (bridge.measureRefused(m.id, m.code, m.message) || modes.refused(m.id, m.code, m.message))) return;
        if (!bridge.answer(m.id, m.type === 'ack' ? { step: m.step, ...(m.detail !== undefined ? { detail: m.detail } : {}) } : { code: m.code, message: m.message })) {
          from.send({ type: 'error', code: 'UNKNOWN_COMMAND', message: `no command "${m.id}" is waiting for an answer` });
        }
        return;
      case 'measured': {
        const raced = bridge.measured(m.id, m.result);
        const outcome = raced.known ? raced : modes.measured(m.id, m.result);
        if (!outcome.known) return from.send({ type: 'error', code: 'UNKNOWN_COMMAND', message: `no measurement "${m.id}" was asked for` });
        if (outcome.issue) from.send({ type: 'error', code: 'BAD_MESSAGE', message: clip(outcome.issue.message, 2000), path: clip(outcome.issue.path, 500) });
        return;
      }
      case 'bye':
        sawBye = m.reason ?? '';
        return;
    }
  };

  const channelToken = generateToken();
  const token = generateToken();
  let channel: Channel | undefined;
  let server: TrainerServer | undefined;
  try {
    channel = await startChannel({
      token: channelToken,
      onHello: (p) => {
        peer = p;
        onLine(`python process ${p.hello.pid} connected to the run`);
        return { type: 'welcome', runId, runDir: paths.dir, config };
      },
      onMessage,
      onClose: (p) => {
        if (peer === p) peer = undefined;
        bridge.disconnected(false);
        modes.disconnected();
        // An attached process that said bye has nothing more to send: the run is over for the host.
        if (child instanceof AttachedProcess && sawBye !== null) child.saidBye(sawBye);
      },
      log: onLine,
      pid: opts.attachPid,
    });
    server = await startServer({
      host: opts.host ?? '127.0.0.1',
      port: opts.port ?? 0,
      token,
      runId,
      runDir: paths.dir,
      source: log,
      onCommand: (msg) => bridge.handle(msg),
      log: onLine,
      httpHandler: dashboardHandler(() => server?.url ?? ''),
    });
  } catch (e) {
    unsubscribe();
    await channel?.close();
    log.close();
    throw e;
  }
  const live = server;
  const openChannel = channel;
  writeTrainerInfo(paths, { pid: process.pid, url: live.url, token });

  let stopSignal: NodeJS.Signals | null = null;
  let launched!: (c: SupervisedChild | AttachedProcess) => void;
  const started = new Promise<SupervisedChild | AttachedProcess>((resolve) => (launched = resolve));

  /** What the log says once the command is gone: its end as the run's final state when Python did not log one. */
  const settle = (exit: ChildExit): { crashed: boolean } => {
    const state = bridge.runState;
    const failed = !!exit.error || exit.code !== 0;
    const what = exit.description ?? `the command ${describeExit(exit)}`;
    // A data-parallel launch: which rank failed first and its own last lines, whatever the others logged.
    const rank = failed && child instanceof SupervisedChild ? child.ranks.firstFailure() : null;
    if (rank) {
      const head = `rank ${rank.rank} failed first${rank.error ? ` (${rank.error})` : ''}; ${rank.lines.length ? 'its last lines:\n' : 'it printed nothing of its own'}`;
      alert('error', 'RANK_FAILED', head + clipStart(rank.lines.join('\n'), Math.max(0, 2000 - head.length)));
    }
    if (state && FINAL.has(state)) {
      // After a forwarded Ctrl-C, Python logs `stopped` and may still die of the signal: that is the stop asked for.
      if (failed && state !== 'crashed' && !stopSignal) alert('warning', 'PROCESS_EXIT', `${what} after the run had ${state}`);
      return { crashed: state === 'crashed' || (failed && !stopSignal) };
    }
    if (stopSignal) {
      log.append({ kind: 'state', step: step(), state: 'stopped', reason: clip(`stopped by ${stopSignal} (forwarded to the command, which then ${describeExit(exit)})`, 1000) });
      return { crashed: false };
    }
    if (!failed) {
      const why = sawBye === null ? 'without a final state or a bye' : 'without a final state record';
      log.append({ kind: 'state', step: step(), state: 'stopped', reason: `${what} ${why}` });
      return { crashed: false };
    }
    // An attached process's output went to its own terminal: the host never saw it.
    const lines = child instanceof SupervisedChild ? child.tail.get() : [];
    const head = lines.length ? `${what}; its last lines:\n` : child instanceof SupervisedChild ? `${what}; it printed nothing` : what;
    const body = lines.join('\n');
    alert('error', 'CRASH', head + clipStart(body, Math.max(0, 2000 - head.length)));
    log.append({ kind: 'state', step: step(), state: 'crashed', reason: clip(head + clipStart(body, Math.max(0, 1000 - head.length)), 1000) });
    return { crashed: true };
  };

  const done = (async (): Promise<HostResult> => {
    const c = await started;
    const exit = await c.exited;
    let outcome = { crashed: true };
    try {
      bridge.end('ended');
      await openChannel.close();
      // A host stopped under an attached process writes nothing more: the process owns the log now (§4).
      outcome = c instanceof AttachedProcess && exit.signal ? { crashed: false } : settle(exit);
    } finally {
      unsubscribe();
      removeTrainerInfo(paths);
      // Live records go out in batches (within 10 ms) and closing drops what is still queued: let the
      // final state reach connected clients first (the log has it either way).
      await new Promise((resolve) => setTimeout(resolve, 100));
      await live.close();
      log.close();
    }
    return { state: bridge.runState, crashed: outcome.crashed, exit };
  })();

  return {
    runId,
    paths,
    url: live.url,
    token,
    dashboardUrl: `${live.url.replace(/^ws/, 'http')}/#token=${token}`,
    channel: openChannel.address,
    channelToken,
    launch: () => {
      if (child) throw new MuonscopeError('INVALID_STATE', 'the command was already started');
      if (opts.attachPid !== undefined) {
        child = new AttachedProcess({ pid: opts.attachPid, connected: () => openChannel.peer() !== undefined });
        return launched(child);
      }
      child = new SupervisedChild({
        command: opts.command!,
        args: opts.args ?? [],
        env: { ...(opts.env ?? process.env), MUONSCOPE_CHANNEL: openChannel.address, MUONSCOPE_CHANNEL_TOKEN: channelToken, MUONSCOPE_RUN_DIR: paths.dir, MUONSCOPE_CONFIG: paths.config },
        stdout: opts.stdout ?? process.stdout,
        stderr: opts.stderr ?? process.stderr,
      });
      launched(child);
    },
    signal: (signal) => {
      if (!child?.running) return;
      if (child instanceof AttachedProcess) return child.detach(signal);
      if (stopSignal) return child.signal('SIGKILL');
      stopSignal = signal;
      onLine(`${signal}: forwarded to the command (again to kill it)`);
      child.signal(signal);
    },
    childPid: () => child?.pid,
    done,
  };
}

/**
 * `muonscope` — the trainer's command line.
 *
 *   muonscope train [CONFIG] [--steps N] [--out DIR] [--listen HOST:PORT] [--backend NAME] [--kernels NAME] [--resume CHECKPOINT|RUNDIR]
 *                   [--default-diagnostics-every N]
 *   muonscope run [CONFIG] [--out DIR] [--listen HOST:PORT] -- COMMAND ARGS…
 *   muonscope run [CONFIG] [--out DIR] [--listen HOST:PORT] --attach-pid PID
 *   muonscope inspect RUNDIR
 *
 * `train`'s first stdout line is one JSON object {"event":"listening","url","token","runDir"} for the
 * extension to read; then progress (a bar on a terminal, plain lines otherwise). SIGINT/SIGTERM
 * checkpoint and exit 0. `run` hosts a PyTorch run (docs/python.md): the same first line, then the
 * command's own output; SIGINT/SIGTERM are forwarded to it. `run --attach-pid` is the host a training
 * script starts for itself (docs/python.md §4): no command; the first line also has `channel` and
 * `channelToken`, only process PID may connect, and the host ends when it says bye or is gone (a signal
 * ends the host alone). Exit codes are in EXIT.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { isMuonscopeError, MuonscopeError } from '../common/errors.js';
import { optimizerLabel } from '../common/optimizer-label.js';
import { formatConfigIssues, validateRunConfig, type RunConfig } from './run/config.js';
import { TORCH_DIAGNOSTICS_BUDGET_PCT, withDefaultDiagnostic } from './run/config-defaults.js';
import { inspectRun } from './run/inspect.js';
import { ProgressPrinter } from './run/progress.js';
import { readRunConfigFile, runDirOf } from '../common/run-folder/layout.js';
import { startSession } from './run/session.js';
import { startHost } from './host/session.js';

export const EXIT = { ok: 0, crashed: 1, badConfig: 2, backendUnavailable: 3, badArguments: 4 } as const;

const USAGE = `usage: muonscope train [CONFIG.muonscope.json] [--steps N] [--out DIR] [--listen HOST:PORT]
                       [--backend auto|tensorflow-gpu|tensorflow|wasm|cpu]
                       [--kernels auto|onnxruntime|onnxruntime-cuda|onnxruntime-cpu|tfjs]
                       [--resume CHECKPOINT|RUNDIR] [--default-diagnostics-every N]
       muonscope run [CONFIG.muonscope.json] [--out DIR] [--listen HOST:PORT] -- COMMAND ARGS…
       muonscope run [CONFIG.muonscope.json] [--out DIR] [--listen HOST:PORT] --attach-pid PID
       muonscope inspect RUNDIR
exit codes: 0 done or stopped, 1 crashed, 2 bad config, 3 backend unavailable, 4 bad arguments`;

class UsageError extends Error {}

function parseListen(raw: string): { host: string; port: number } {
  const m = /^(.+):(\d+)$/.exec(raw);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) throw new UsageError(`--listen must be HOST:PORT (e.g. 127.0.0.1:8765), got "${raw}"`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

function loadConfig(file: string | undefined, resume: string | undefined): { raw: unknown; dir: string; label: string } {
  if (resume) {
    const paths = runDirOf(resume);
    return { raw: readRunConfigFile(paths), dir: paths.dir, label: paths.config };
  }
  if (!file) return { raw: {}, dir: process.cwd(), label: '(default config)' };
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new MuonscopeError('INVALID_ARGUMENT', `cannot read config ${file}: ${(e as Error).message}`);
  }
  try {
    // Comments are allowed, as VS Code's JSON-with-comments editor writes them.
    return { raw: JSON.parse(text.replace(/^\s*\/\/.*$/gm, '')), dir: dirname(resolve(file)), label: file };
  } catch (e) {
    throw new MuonscopeError('INVALID_ARGUMENT', `${file}: not valid JSON: ${(e as Error).message}`);
  }
}

async function train(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      steps: { type: 'string' },
      out: { type: 'string', default: 'runs' },
      listen: { type: 'string' },
      backend: { type: 'string' },
      kernels: { type: 'string' },
      resume: { type: 'string' },
      'default-diagnostics-every': { type: 'string' },
    },
  });
  if (positionals.length > 1) throw new UsageError(`train takes one config file, got ${positionals.length}`);
  const { raw, dir, label } = loadConfig(positionals[0], values.resume);
  const overrides = raw as Record<string, unknown>;
  if (values.steps !== undefined) overrides.steps = /^\d+$/.test(values.steps) ? Number(values.steps) : values.steps;
  const defaultEvery = values['default-diagnostics-every'];
  if (defaultEvery !== undefined) {
    if (!/^[1-9]\d*$/.test(defaultEvery)) throw new UsageError(`--default-diagnostics-every must be a positive integer, got "${defaultEvery}"`);
    withDefaultDiagnostic(overrides, 'every', Number(defaultEvery));
  }
  if (values.backend || values.kernels) overrides.compute = { ...(overrides.compute as object), ...(values.backend ? { backend: values.backend } : {}), ...(values.kernels ? { kernels: values.kernels } : {}) };
  const result = validateRunConfig(overrides);
  if (!result.ok) {
    console.error(formatConfigIssues(label, result.issues));
    return EXIT.badConfig;
  }
  const config: RunConfig = result.config;
  if (config.command) {
    console.error(`${label}: this config names a training command (${JSON.stringify(config.command)}); run it with \`muonscope run ${positionals[0] ?? 'CONFIG'}\`, which hosts it (train runs the built-in TF.js trainer)`);
    return EXIT.badConfig;
  }
  const listen = values.listen ? parseListen(values.listen) : { host: '127.0.0.1', port: 0 };
  const progress = new ProgressPrinter(config.steps, process.stdout);
  const session = await startSession({
    config,
    configDir: dir,
    runsRoot: resolve(values.out!),
    host: listen.host,
    port: listen.port,
    resume: values.resume,
    onProgress: (r) => progress.update(r),
    onLine: (line) => progress.log(line),
  });
  process.stdout.write(JSON.stringify({ event: 'listening', url: session.url, token: session.token, runDir: session.paths.dir }) + '\n');
  const report = (kind: string, r: { chosen: string; skipped: { name: string; reason: string }[] }) =>
    progress.log([`${kind}: ${r.chosen}`, ...r.skipped.map((s) => `  skipped ${s.name}: ${s.reason}`)].join('\n'));
  progress.log(`dashboard: ${session.dashboardUrl}`);
  report('TF.js backend', session.backend);
  report('optimizer kernels', session.kernels);
  progress.log(`${session.workload.description}; ${optimizerLabel(config.optimizer)}; run folder ${session.paths.dir}`);
  const stop = (signal: string) => () => session.trainer.requestStop(`signal ${signal}`);
  process.once('SIGINT', stop('SIGINT'));
  process.once('SIGTERM', stop('SIGTERM'));
  const state = await session.done;
  progress.finish(`run ${state} at step ${session.trainer.step}; inspect it with: muonscope inspect ${session.paths.dir}`);
  return EXIT.ok;
}

/** `run`: the host of a PyTorch run; the training is COMMAND's, which connects back over the channel. */
async function run(argv: string[]): Promise<number> {
  const dashes = argv.indexOf('--');
  let [command, ...args] = dashes < 0 ? [] : argv.slice(dashes + 1);
  const { values, positionals } = parseArgs({ args: dashes < 0 ? argv : argv.slice(0, dashes), allowPositionals: true, options: { out: { type: 'string', default: 'runs' }, listen: { type: 'string' }, 'attach-pid': { type: 'string' } } });
  const attach = values['attach-pid'];
  if (attach !== undefined && (command || !/^[1-9]\d*$/.test(attach))) throw new UsageError(command ? '--attach-pid takes no command after --' : `--attach-pid must be a process id, got "${attach}"`);
  if (positionals.length > 1) throw new UsageError(`run takes one config file before --, got ${positionals.length}`);
  const { raw, label } = loadConfig(positionals[0], undefined);
  // A config that is not an object is the validator's to report, untouched.
  if (typeof raw === 'object' && raw !== null && !Array.isArray(raw)) withDefaultDiagnostic(raw as Record<string, unknown>, 'budgetPct', TORCH_DIAGNOSTICS_BUDGET_PCT);
  const result = validateRunConfig(raw);
  if (!result.ok) {
    console.error(formatConfigIssues(label, result.issues));
    return EXIT.badConfig;
  }
  // With nothing after --, the config's own `command` runs (from the current folder, as typed at a shell).
  if (!command && attach === undefined && result.config.command) [command, ...args] = result.config.command;
  if (!command && attach === undefined) throw new UsageError('run needs the training command after -- (or a config with "command"), e.g. muonscope run -- python train.py');
  const listen = values.listen ? parseListen(values.listen) : { host: '127.0.0.1', port: 0 };
  const session = await startHost({ config: result.config, runsRoot: resolve(values.out!), host: listen.host, port: listen.port, ...(attach ? { attachPid: Number(attach) } : { command, args }) });
  // The process that started an attached host may stop reading (or exit) before it does: nothing to say then.
  if (attach) for (const s of [process.stdout, process.stderr]) s.on('error', () => undefined);
  const channel = attach ? { channel: session.channel, channelToken: session.channelToken } : {};
  process.stdout.write(JSON.stringify({ event: 'listening', url: session.url, token: session.token, runDir: session.paths.dir, ...channel }) + '\n');
  process.stdout.write(`dashboard: ${session.dashboardUrl}\n`);
  process.on('SIGINT', () => session.signal('SIGINT'));
  process.on('SIGTERM', () => session.signal('SIGTERM'));
  session.launch();
  const done = await session.done;
  process.stdout.write(`run ${done.state ?? 'ended'}; inspect it with: muonscope inspect ${session.paths.dir}\n`);
  return done.crashed ? EXIT.crashed : EXIT.ok;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'train') return await train(rest);
    if (command === 'run') return await run(rest);
    if (command === 'inspect') {
      if (rest.length !== 1) throw new UsageError('inspect takes one run folder');
      console.log(inspectRun(rest[0]));
      return EXIT.ok;
    }
    throw new UsageError(command ? `unknown command "${command}"` : 'no command given');
  } catch (e) {
    if (e instanceof UsageError || (e as NodeJS.ErrnoException)?.code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`muonscope: ${(e as Error).message}\n${USAGE}`);
      return EXIT.badArguments;
    }
    if (isMuonscopeError(e, 'BACKEND_UNAVAILABLE') || isMuonscopeError(e, 'KERNELS_UNAVAILABLE')) {
      console.error(`muonscope: ${e.message}`);
      return EXIT.backendUnavailable;
    }
    if (isMuonscopeError(e, 'INVALID_ARGUMENT')) {
      console.error(`muonscope: ${e.message}`);
      return EXIT.badConfig;
    }
    console.error('muonscope: crashed:', e);
    return EXIT.crashed;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
  // Native thread pools (onnxruntime) and wasm can keep the loop alive after the run is over.
  setTimeout(() => process.exit(code), 200).unref();
});

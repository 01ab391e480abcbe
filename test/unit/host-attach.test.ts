// The host a training script starts for itself (docs/python.md §4, `muonscope run --attach-pid PID`): the
// host did not start the process, so it waits for exactly that pid to connect, ends when it says bye or is
// gone (then the run is crashed unless it logged a final state), and never signals it. The process here is
// the plain-Node fake of test/helpers/fake-python-child.mjs, started by the test with the host's channel.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { LogRecord, RecordOf } from '../../common/protocol.js';
import { readRunLog } from '../../common/run-folder/log.js';
import { pidAlive } from '../../trainer/host/attached.js';
import { startHost, type HostSession } from '../../trainer/host/session.js';
import { validateRunConfig } from '../../trainer/run/config.js';
import { waitUntil, within } from '../helpers/wait.js';
import { TestClient } from '../helpers/ws-client.js';

const ROOT = join(__dirname, '..', '..');
const FAKE = join(__dirname, '..', 'helpers', 'fake-python-child.mjs');
const tmp = () => mkdtempSync(join(tmpdir(), 'muonscope-attach-'));
const ofKind = <K extends LogRecord['kind']>(records: LogRecord[], kind: K) => records.filter((r): r is RecordOf<K> => r.kind === kind);

function config() {
  const r = validateRunConfig({ name: 'attached', steps: 100, advisor: { mode: 'off' } });
  assert.ok(r.ok);
  return r.config;
}

const hosts: HostSession[] = [];
const children: ChildProcess[] = [];
const clients: TestClient[] = [];
after(async () => {
  for (const c of clients) c.close();
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const h of hosts) {
    h.signal('SIGTERM');
    await h.done.catch(() => undefined);
  }
});

/** Starts the fake training process with the host's channel, as the Python side connects after reading the host's first line. */
function fake(session: HostSession, env: Record<string, string>) {
  const child = spawn(process.execPath, [FAKE], {
    env: { ...process.env, MUONSCOPE_CHANNEL: session.channel, MUONSCOPE_CHANNEL_TOKEN: session.channelToken, MUONSCOPE_RUN_DIR: session.paths.dir, MUONSCOPE_CONFIG: session.paths.config, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, out: () => out, exit };
}

describe('muonscope run --attach-pid: a host started by the training', () => {
  test('only the attached pid may connect; its records reach the log and a client; bye ends the run as the process logged it', async () => {
    // The host needs the pid before the process has the channel: a first process is refused, then the
    // host for the second one's pid takes it. The pid is known once spawned, the channel is read from env
    // at start, so each host is made for a process that does not exist yet: use an idle process's pid.
    const idle = spawn(process.execPath, ['-e', 'setInterval(() => undefined, 1000)'], { stdio: 'ignore' });
    children.push(idle);
    const session = await startHost({ config: config(), runsRoot: tmp(), attachPid: idle.pid!, onLine: () => undefined });
    hosts.push(session);
    session.launch();
    // Another process with the right token is refused before it is let in.
    const intruder = fake(session, { FAKE_MODE: 'finish' });
    await waitUntil('the intruder to be refused', () => intruder.out(), { until: (t) => t.includes('channel closed') });
    assert.match(intruder.out(), /fake: host error BAD_HELLO -/);
    assert.doesNotMatch(intruder.out(), /welcome/);
    assert.deepEqual(readRunLog(session.paths.log).records, [], 'nothing from the intruder was logged');
    assert.equal(existsSync(session.paths.trainer), true);
    // The attached process going away without a connection: crashed, with the pid in the reason.
    idle.kill('SIGKILL');
    const result = await within('the host to end after the idle process died', session.done);
    assert.deepEqual([result.state, result.crashed], ['crashed', true]);
    const [alert, state] = readRunLog(session.paths.log).records as [RecordOf<'alert'>, RecordOf<'state'>];
    assert.deepEqual([alert.code, alert.message], ['CRASH', `the Python process (pid ${idle.pid}) ended without saying bye`]);
    assert.deepEqual([state.state, state.reason], ['crashed', alert.message]);
    assert.equal(existsSync(session.paths.trainer), false, 'trainer.json goes with the host');
  });

  test('a process that finishes and says bye ends the host with its own final state; nothing is added', async () => {
    // The fake reads its channel from the environment at start, so the host is made first for a pid that
    // is then given to it by starting the fake through a shell that execs it (same pid).
    const lines: string[] = [];
    const sh = spawn('sh', ['-c', 'read line; eval "$line"; exec "$0" "$1"', process.execPath, FAKE], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, FAKE_MODE: 'finish', FAKE_STEPS: '4' } });
    children.push(sh);
    let out = '';
    sh.stdout!.on('data', (d) => (out += d));
    const session = await startHost({ config: config(), runsRoot: tmp(), attachPid: sh.pid!, onLine: (l) => lines.push(l) });
    hosts.push(session);
    session.launch();
    const c = await TestClient.connect(session.url, session.token);
    clients.push(c);
    sh.stdin!.end(`export MUONSCOPE_CHANNEL=${session.channel} MUONSCOPE_CHANNEL_TOKEN=${session.channelToken} MUONSCOPE_RUN_DIR='${session.paths.dir}' MUONSCOPE_CONFIG='${session.paths.config}'\n`);
    const result = await within('the host to end after bye', session.done);
    assert.deepEqual([result.state, result.crashed, result.exit.code], ['finished', false, 0]);
    assert.match(out, new RegExp(`fake: welcome ${session.runId} steps 100`));
    assert.ok(lines.includes(`python process ${sh.pid} connected to the run`), lines.join('\n'));
    const records = readRunLog(session.paths.log).records;
    assert.deepEqual(records.map((r) => [r.seq, r.kind]), [[1, 'run_started'], [2, 'step'], [3, 'step'], [4, 'step'], [5, 'step'], [6, 'state']]);
    assert.equal(ofKind(records, 'state')[0].state, 'finished');
    await c.waitFor('the finished state, live', (r) => r.kind === 'state' && r.state === 'finished');
  });

  test('a process killed mid-run leaves the run crashed at its last step, the log intact; a signal to the host ends the host alone', async () => {
    const sh = spawn('sh', ['-c', 'read line; eval "$line"; exec "$0" "$1"', process.execPath, FAKE], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, FAKE_MODE: 'serve', FAKE_STEPS: '5' } });
    children.push(sh);
    let out = '';
    sh.stdout!.on('data', (d) => (out += d));
    const exited = new Promise((resolve) => sh.on('exit', resolve));
    const session = await startHost({ config: config(), runsRoot: tmp(), attachPid: sh.pid!, onLine: () => undefined });
    hosts.push(session);
    session.launch();
    sh.stdin!.end(`export MUONSCOPE_CHANNEL=${session.channel} MUONSCOPE_CHANNEL_TOKEN=${session.channelToken}\n`);
    await waitUntil('the fake to be answered for its sync line', () => out, { until: (t) => t.includes('host error UNKNOWN_COMMAND') });
    sh.kill('SIGKILL');
    await exited;
    const result = await within('the host to end after the process died', session.done);
    assert.deepEqual([result.state, result.crashed], ['crashed', true]);
    const logged = readRunLog(session.paths.log);
    assert.deepEqual(logged.skipped, []);
    assert.deepEqual(ofKind(logged.records, 'step').map((s) => s.step), [0, 1, 2, 3, 4]);
    const [alert, state] = logged.records.slice(-2) as [RecordOf<'alert'>, RecordOf<'state'>];
    assert.deepEqual([alert.code, state.state, state.step], ['CRASH', 'crashed', 5]);
    assert.equal(state.reason, `the Python process (pid ${sh.pid}) ended without saying bye`);

    // SIGTERM to an attached host: the host ends, writes nothing, and the process is left running.
    const idle = spawn(process.execPath, ['-e', 'setInterval(() => undefined, 1000)'], { stdio: 'ignore' });
    children.push(idle);
    const second = await startHost({ config: config(), runsRoot: tmp(), attachPid: idle.pid!, onLine: () => undefined });
    hosts.push(second);
    second.launch();
    second.signal('SIGTERM');
    const stopped = await within('the host to end after SIGTERM', second.done);
    assert.deepEqual([stopped.state, stopped.crashed, stopped.exit.signal], [null, false, 'SIGTERM']);
    assert.deepEqual(readRunLog(second.paths.log).records, []);
    assert.equal(pidAlive(idle.pid!), true, 'the training process is not signalled');
    idle.kill('SIGKILL');
  });

  test('pidAlive: a live process, a zombie nobody reaps, and a pid that is gone', { skip: !existsSync('/proc/self/stat') && 'needs /proc (Linux)' }, async () => {
    assert.equal(pidAlive(process.pid), true);
    // The background sleep outlives the shell, which then becomes `sleep 5`: that never reaps it, a zombie for a while.
    const parent = spawn('sh', ['-c', 'sleep 0.2 & echo $!; exec sleep 5'], { stdio: ['ignore', 'pipe', 'ignore'] });
    children.push(parent);
    let out = '';
    parent.stdout!.on('data', (d) => (out += d));
    const zombie = Number(await waitUntil('the background pid', () => out, { until: (t) => /^\d+\n/.test(t) }).then(() => out.trim()));
    await waitUntil('the background process to exit', () => readFileSync(`/proc/${zombie}/stat`, 'utf8'), { until: (t) => /\) Z /.test(t) });
    assert.doesNotThrow(() => process.kill(zombie, 0), 'a zombie still answers kill(pid, 0)');
    assert.equal(pidAlive(zombie), false);
    parent.kill('SIGKILL');
    assert.equal(pidAlive(2 ** 22 + 1), false, 'above the largest pid Linux hands out');
  });
});

describe('the CLI', () => {
  function runCli(args: string[]) {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'trainer', 'cli.ts'), 'run', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    return { exit: new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code))), err: () => err };
  }

  test('--attach-pid takes a process id and no command', async () => {
    const both = runCli(['--attach-pid', '123', '--', 'python', 'train.py']);
    const bad = runCli(['--attach-pid', 'abc']);
    assert.equal(await within('the CLI to refuse a command with --attach-pid', both.exit), 4);
    assert.match(both.err(), /--attach-pid takes no command after --/);
    assert.equal(await within('the CLI to refuse a bad pid', bad.exit), 4);
    assert.match(bad.err(), /--attach-pid must be a process id, got "abc"/);
  });
});

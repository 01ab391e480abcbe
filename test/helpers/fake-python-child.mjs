// A stand-in for a Python training process on the host's channel (docs/python.md §3), in plain Node so the
// host's tests need no Python. It says hello, logs run_started and FAKE_STEPS step records, then answers
// commands the way the Python side must: a control record (and state) at the step it has reached, then an
// ack with that step. It prints what it gets back from the host, so a test can read it from the output.
//
//   FAKE_MODE   serve (default): answer commands until `stop`; finish: log `finished`, say bye, exit 0;
//               hang: print FAKE_LINES lines on stderr and wait to be killed; fail: exit 3 (no bye);
//               idle: never connect, wait
//   FAKE_STEPS  step records to send first (default 3)
//   FAKE_EXTRA  a JSON array of records to send after them (e.g. invalid ones the host must refuse)
//   FAKE_TOKEN  the token to present instead of MUONSCOPE_CHANNEL_TOKEN
import { existsSync } from 'node:fs';
import { connect } from 'node:net';

const env = process.env;
const mode = env.FAKE_MODE ?? 'serve';
const steps = Number(env.FAKE_STEPS ?? 3);
const say = (line) => process.stdout.write(`fake: ${line}\n`);

if (mode === 'idle') {
  say('idle');
  setInterval(() => undefined, 1000);
} else {
  say(`env run dir ${existsSync(env.MUONSCOPE_RUN_DIR ?? '') ? 'exists' : 'missing'}, config ${existsSync(env.MUONSCOPE_CONFIG ?? '') ? 'exists' : 'missing'}`);
  const [host, port] = env.MUONSCOPE_CHANNEL.split(':');
  const socket = connect(Number(port), host);
  const send = (m) => socket.write(JSON.stringify(m) + '\n');
  const record = (r) => send({ type: 'record', record: r });
  send({ type: 'hello', token: env.FAKE_TOKEN ?? env.MUONSCOPE_CHANNEL_TOKEN, protocol: 1, pid: process.pid, rank: 0, worldSize: 1 });
  let step = 0;
  let state = 'running';

  const control = (id, command, source, field, old, value) => record({ kind: 'control', step, command, field, old, new: value, source, reason: '', commandId: id });
  const setState = (s, reason) => {
    state = s;
    record({ kind: 'state', step, state: s, reason });
  };

  const onCommand = ({ id, command, source }) => {
    say(`command ${id} ${JSON.stringify(command)} from ${source}`);
    if (command.kind === 'pause' && state === 'running') {
      control(id, 'pause', source, 'state', 'running', 'paused');
      setState('paused', `paused by ${source}`);
      send({ type: 'ack', id, step });
    } else if (command.kind === 'resume' && state === 'paused') {
      control(id, 'resume', source, 'state', 'paused', 'running');
      setState('running', `resumed by ${source}`);
      send({ type: 'ack', id, step });
    } else if (command.kind === 'set_lr') {
      control(id, 'set_lr', source, 'lr', 0.02, command.lr);
      send({ type: 'ack', id, step, detail: `lr ${command.lr}` });
    } else if (command.kind === 'stop') {
      control(id, 'stop', source, 'state', state, 'stopped');
      setState('stopped', command.reason ?? `stopped by ${source}`);
      send({ type: 'ack', id, step });
      send({ type: 'bye', reason: 'stopped' });
      socket.end(() => process.exit(0));
    } else {
      send({ type: 'refused', id, code: 'NOT_ALLOWED_NOW', message: `cannot ${command.kind}: the run is ${state}` });
    }
  };

  let buffer = '';
  socket.on('data', (chunk) => {
    buffer += chunk;
    for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
      const m = JSON.parse(buffer.slice(0, nl));
      buffer = buffer.slice(nl + 1);
      if (m.type === 'welcome') start(m);
      else if (m.type === 'error') say(`host error ${m.code} ${m.path ?? '-'}`);
      else if (m.type === 'command') onCommand(m);
    }
  });
  socket.on('close', () => say('channel closed'));

  function start(welcome) {
    say(`welcome ${welcome.runId} steps ${welcome.config.steps}`);
    record({
      kind: 'run_started',
      step: 0,
      // What watch() sends: the script's own config, its optimizer as the optimizer reports itself.
      config: { name: 'fake-script', steps: welcome.config.steps, optimizer: { type: 'dynmuon', lr: 0.02, mode: 'exact', normalization: 'frobenius', schedule: { type: 'constant', p: 0.1 } } },
      backend: { chosen: 'torch cpu', skipped: [] },
      kernels: { chosen: 'torch', skipped: [] },
      totalSteps: welcome.config.steps,
      task: { name: 'fake', lossFloor: null, lossFloorLabel: '' },
      params: [{ name: 'fc.weight', shape: [4, 4], route: 'matrix' }],
    });
    for (; step < steps; step++) record({ kind: 'step', step, loss: 1 / (step + 1), lr: 0.02, p: 0.1, stepMs: 1 });
    for (const r of JSON.parse(env.FAKE_EXTRA ?? '[]')) {
      record(r);
      if (r.kind === 'step' && Number.isInteger(r.step)) step = r.step + 1;
    }
    if (mode === 'fail') {
      process.stderr.write('RuntimeError: fake failure\n');
      socket.end(() => process.exit(3));
      return;
    }
    if (mode === 'finish') {
      setState('finished', `completed ${steps} steps`);
      send({ type: 'bye', reason: 'finished' });
      socket.end(() => process.exit(0));
      return;
    }
    if (mode === 'hang') {
      for (let i = 1; i <= Number(env.FAKE_LINES ?? 60); i++) process.stderr.write(`traceback line ${i} ${'.'.repeat(15)}\n`);
    }
    // A no-op line the host answers with an error proves everything before it has been handled.
    send({ type: 'ack', id: 'sync', step });
  }
}

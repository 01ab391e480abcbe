// A stand-in for a Python training process that answers the host's `measure` (docs/python.md §3), in plain
// Node: hello, run_started (two matrix layers), FAKE_STEPS step records with p 0.1, then it waits for a
// measure and answers it as FAKE_ANSWER says, prints what it got, proves the host handled the answer (a
// sync ack the host answers UNKNOWN_COMMAND), then logs `finished`, says bye and exits 0.
//
//   FAKE_ANSWER   measured (default): {"type":"measured","id",result: FAKE_RESULT}; refused: a NOT_ALLOWED_NOW
//                 refusal
//   FAKE_RESULT   the JSON result to send
//   FAKE_STEPS    step records (default 4)
import { connect } from 'node:net';

const env = process.env;
const steps = Number(env.FAKE_STEPS ?? 4);
const say = (line) => process.stdout.write(`fake: ${line}\n`);
const [host, port] = env.MUONSCOPE_CHANNEL.split(':');
const socket = connect(Number(port), host);
const send = (m) => socket.write(JSON.stringify(m) + '\n');
const record = (r) => send({ type: 'record', record: r });
send({ type: 'hello', token: env.MUONSCOPE_CHANNEL_TOKEN, protocol: 1, pid: process.pid });

let buffer = '';
socket.on('data', (chunk) => {
  buffer += chunk;
  for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
    const m = JSON.parse(buffer.slice(0, nl));
    buffer = buffer.slice(nl + 1);
    if (m.type === 'welcome') start(m);
    else if (m.type === 'measure') answer(m);
    else if (m.type === 'error') {
      say(`host error ${m.code} ${m.path ?? '-'}`);
      if (m.code === 'UNKNOWN_COMMAND') finish();
    }
  }
});

function start(welcome) {
  record({
    kind: 'run_started',
    step: 0,
    backend: { chosen: 'torch cpu', skipped: [] },
    kernels: { chosen: 'torch', skipped: [] },
    totalSteps: welcome.config.steps,
    task: { name: 'fake', lossFloor: null, lossFloorLabel: '' },
    params: [
      { name: 'a.weight', shape: [16, 32], route: 'matrix' },
      { name: 'a.bias', shape: [16], route: 'non-matrix' },
      { name: 'b.weight', shape: [8, 8], route: 'matrix' },
    ],
  });
  for (let step = 0; step < steps; step++) record({ kind: 'step', step, loss: 1 / (step + 1), lr: 0.02, p: 0.1, stepMs: 10 });
}

function answer(m) {
  say(`measure ${m.id} ${m.what} ${JSON.stringify(m.params)}`);
  if (env.FAKE_ANSWER === 'refused') send({ type: 'refused', id: m.id, code: 'NOT_ALLOWED_NOW', message: 'no probe' });
  else send({ type: 'measured', id: m.id, result: JSON.parse(env.FAKE_RESULT) });
  send({ type: 'ack', id: 'sync', step: steps });
}

function finish() {
  record({ kind: 'state', step: steps, state: 'finished', reason: 'done' });
  send({ type: 'bye', reason: 'finished' });
  socket.end(() => process.exit(0));
}

// The training loop end to end, in process and through the CLI: every command's ack and audit record,
// non-finite loss/gradient → pause + alert with the last checkpoint untouched, determinism, exact
// resume, SIGKILL recovery, and a live run left unharmed by a flood of malformed frames.
import { curvatureVsSigmaFit } from '../../trainer/diagnostics/index.js';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import type { LogRecord, RecordOf } from '../../common/protocol.js';
import type { RunConfig } from '../../trainer/run/config.js';
import { listCheckpoints } from '../../trainer/run/checkpoint.js';
import { readRunLog, RunLog } from '../../common/run-folder/log.js';
import { startSession, type Session } from '../../trainer/run/session.js';
import { Trainer } from '../../trainer/run/trainer.js';
import { assertAbove, assertAtLeast, assertAtMost } from '../helpers/bounds.js';
import { tinyMlpConfig, tinyRunParts } from '../helpers/tiny-run.js';
import { SLOW_TEST, waitUntil, within } from '../helpers/wait.js';
import { TestClient } from '../helpers/ws-client.js';

const CLI = join(__dirname, '..', '..', 'dist', 'trainer', 'cli.js');
const tmp = () => mkdtempSync(join(tmpdir(), 'muonscope-trainer-'));

const mlpConfig = tinyMlpConfig;

const stepsOf = (records: LogRecord[]) => records.filter((r): r is RecordOf<'step'> => r.kind === 'step');
const ofKind = <K extends LogRecord['kind']>(records: LogRecord[], kind: K) => records.filter((r): r is RecordOf<K> => r.kind === kind);

async function runToEnd(config: RunConfig, runsRoot = tmp(), resume?: string): Promise<{ session: Session; records: LogRecord[] }> {
  const session = await startSession({ config, configDir: process.cwd(), runsRoot, resume });
  await session.done;
  return { session, records: readRunLog(session.paths.log).records };
}

const sessions: Session[] = [];
after(async () => {
  for (const s of sessions) {
    s.trainer.requestStop('test over');
    await s.done.catch(() => undefined);
  }
});

describe('live control', () => {
  test('each command is acknowledged with its step, applied between steps, and audited in the log', SLOW_TEST, async () => {
    const session = await startSession({ config: mlpConfig({ steps: 1_000_000, evalEvery: 1000, checkpointEvery: 100000 }), configDir: process.cwd(), runsRoot: tmp() });
    sessions.push(session);
    const client = await TestClient.connect(session.url, session.token);
    await client.waitFor('step 3', (r) => r.kind === 'step' && r.step >= 3);

    const pause = await client.command({ kind: 'pause', reason: 'look' });
    assert.equal(pause.type, 'ack');
    const pausedAt = (pause as { step: number }).step;
    await client.waitFor('the paused state', (r) => r.kind === 'state' && r.state === 'paused');
    // Records arrive in seq order, so every step logged before the pause is here.
    assert.equal(stepsOf(client.records).at(-1)!.step, pausedAt - 1, 'paused right after the step in flight');

    assert.deepEqual(await client.command({ kind: 'step', n: 3 }), { type: 'ack', id: 'c2', kind: 'step', step: pausedAt, detail: 'running 3 step(s), then pausing' });
    await client.waitFor(`the pause after step ${pausedAt + 2}`, (r) => r.kind === 'state' && r.state === 'paused' && r.step === pausedAt + 3);
    // The step command's ack (at pausedAt) and this list show that no step ran while paused.
    const since = stepsOf(client.records).filter((s) => s.step >= pausedAt).map((s) => s.step);
    assert.deepEqual(since, [pausedAt, pausedAt + 1, pausedAt + 2], 'exactly the 3 steps asked for, after the pause');

    const lr = await client.command({ kind: 'set_lr', lr: 0.01, reason: 'too hot' });
    assert.equal(lr.type, 'ack');
    const sched = await client.command({ kind: 'set_schedule', schedule: { type: 'constant', p: 0.5 }, reason: 'try p=0.5' });
    assert.match((sched as { detail: string }).detail, /p from step \d+: 0\.5000/);
    assert.equal((await client.command({ kind: 'set_diagnostics', every: 7, adaptive: false })).type, 'ack');
    const ckpt = await client.command({ kind: 'checkpoint', reason: 'keep this' });
    assert.ok(existsSync((ckpt as { detail: string }).detail), 'checkpoint file named in the ack exists');

    const refused = await client.command({ kind: 'resume' }).then(() => client.command({ kind: 'step', n: 1 }));
    assert.deepEqual([refused.type, (refused as { code: string }).code], ['error', 'NOT_ALLOWED_NOW']);
    const badP = await client.command({ kind: 'set_schedule', schedule: { type: 'constant', p: 2 } });
    assert.deepEqual([badP.type, (badP as { code: string }).code], ['error', 'INVALID_COMMAND']);
    assert.match((badP as { message: string }).message, /outside \[-1, 1\]/);
    const past = await client.command({ kind: 'set_schedule', schedule: { type: 'constant', p: 0.1 }, fromStep: 0 });
    assert.match((past as { message: string }).message, /in the past/);

    const resumedStep = (await client.waitFor('a step at lr 0.01', (r) => r.kind === 'step' && (r as { lr: number }).lr === 0.01)) as RecordOf<'step'>;
    assert.equal(resumedStep.p, 0.5, 'the new schedule is in effect at the next step');
    assert.equal((await client.command({ kind: 'stop', reason: 'done' })).type, 'ack');
    assert.equal(await session.done, 'stopped');

    const log = readRunLog(session.paths.log).records;
    const controls = ofKind(log, 'control');
    assert.deepEqual(controls.map((c) => c.command), ['pause', 'step', 'set_lr', 'set_schedule', 'set_diagnostics', 'resume', 'stop']);
    const setLr = controls.find((c) => c.command === 'set_lr')!;
    assert.deepEqual([setLr.old, setLr.new, setLr.source, setLr.reason, setLr.commandId], [0.02, 0.01, 'test', 'too hot', 'c3']);
    assert.deepEqual(ofKind(log, 'state').at(-1)!.state, 'stopped');
    assert.ok(ofKind(log, 'checkpoint').some((c) => c.reason === 'keep this'), 'the on-demand checkpoint is logged');
    assert.ok(ofKind(log, 'checkpoint').at(-1)!.reason.startsWith('final'), 'stopping writes a final checkpoint');
    client.close();
  });
});

describe('non-finite values', () => {
  async function trainerWith(lossHook: (step: number, loss: tf.Scalar, vars: tf.Variable[]) => tf.Scalar) {
    const config = mlpConfig({ steps: 30, checkpointEvery: 5 });
    const { workload, optimizer } = await tinyRunParts(config);
    const dir = tmp();
    const log = new RunLog(join(dir, 'log.ndjson'));
    let step = 0;
    const hooked = { ...workload, batch: (i: number) => ((step = i), workload.batch(i)), loss: (b: Parameters<typeof workload.loss>[0]) => lossHook(step, workload.loss(b), workload.variables) };
    const settings = { runId: 'nan', totalSteps: 30, evalEvery: 10, checkpointEvery: 5, checkpointDir: join(dir, 'ck'), diagnosticsEvery: 25, diagnosticsAdaptive: true, diagnosticsBudgetPct: 10 };
    const trainer = new Trainer(settings, hooked, optimizer, log, 0);
    return { trainer, log, dir: settings.checkpointDir, workload };
  }

  test('a NaN loss pauses the run with an alert, before any update, and leaves the checkpoints alone', SLOW_TEST, async () => {
    // The same run without the fault: the loss step 12 must have when it is tried again.
    const clean = await trainerWith((_step, loss) => loss);
    assert.equal(await clean.trainer.run(), 'finished');
    clean.log.close();
    clean.workload.dispose();
    const cleanLoss12 = stepsOf(readRunLog(clean.log.path).records).find((s) => s.step === 12)!.loss;

    let faults = 0;
    const { trainer, log, dir, workload } = await trainerWith((step, loss) => (step === 12 && faults++ === 0 ? tf.mul(loss, NaN) : loss));
    const running = trainer.run();
    await waitUntil('the NaN loss to pause the run', () => trainer.currentState, { until: (s) => s === 'paused' });
    const alert = ofKind(readRunLog(log.path).records, 'alert')[0];
    assert.deepEqual([alert.code, alert.step], ['NON_FINITE_LOSS', 12]);
    assert.equal(trainer.step, 12, 'the bad step did not count');
    assert.deepEqual(listCheckpoints(dir).map((f) => basename(f)), ['step-00000010.ckpt', 'step-00000005.ckpt'], 'only the periodic checkpoints from before the fault');
    assert.deepEqual(ofKind(readRunLog(log.path).records, 'checkpoint').map((c) => c.step), [5, 10], 'the pause wrote no checkpoint');
    // Tried again, step 12 gives the clean run's loss: the faulty step changed no weight and no optimizer state.
    await trainer.enqueue({ kind: 'step', n: 1 }, { source: 'test' });
    const retried = await waitUntil('the retried step 12 in the log', () => stepsOf(readRunLog(log.path).records).at(-1), { until: (s) => s?.step === 12 });
    assert.equal(retried!.loss, cleanLoss12, 'the retried step 12 loss equals the clean run\'s');
    trainer.requestStop('test');
    await running;
    log.close();
    workload.dispose();
  });

  test('a failing observer (diagnostics) is a warning alert; training goes on', SLOW_TEST, async () => {
    const { trainer, log, workload } = await trainerWith((_step, loss) => loss);
    trainer.observers.push({ afterUpdate: async (ctx) => { if (ctx.step === 5) throw new Error('probe exploded'); } });
    assert.equal(await trainer.run(), 'finished');
    log.close();
    workload.dispose();
    const records = readRunLog(log.path).records;
    const alert = records.find((r): r is RecordOf<'alert'> => r.kind === 'alert')!;
    assert.deepEqual([alert.level, alert.code, alert.step], ['warning', 'OBSERVER_FAILED', 5]);
    assert.match(alert.message, /probe exploded/);
    assert.equal(stepsOf(records).length, 30, 'every step ran');
  });

  test('a non-finite gradient pauses the run and names the layer', SLOW_TEST, async () => {
    // Multiplying one weight by a custom op whose gradient is NaN poisons exactly that parameter's gradient.
    const poison = tf.customGrad(((x: tf.Tensor) => ({ value: x.clone(), gradFunc: (dy: tf.Tensor) => tf.mul(dy, NaN) })) as unknown as Parameters<typeof tf.customGrad>[0]);
    const { trainer, log, workload } = await trainerWith((step, loss, vars) => {
      if (step !== 7) return loss;
      const w = vars.find((v) => v.name === 'mlp.layer1.weight')!;
      return tf.add(loss, tf.mul(tf.sum(poison(w) as tf.Tensor), 0));
    });
    const running = trainer.run();
    await waitUntil('the NaN gradient to pause the run', () => trainer.currentState, { until: (s) => s === 'paused' });
    const alert = ofKind(readRunLog(log.path).records, 'alert')[0];
    assert.deepEqual([alert.code, alert.step, alert.layer], ['NON_FINITE_GRADIENT', 7, 'mlp.layer1.weight']);
    trainer.requestStop('test');
    await running;
    log.close();
    workload.dispose();
  });
});

describe('reproducibility', () => {
  test('same seed, same backend: the same losses step for step; a resumed run continues the same trajectory exactly', SLOW_TEST, async () => {
    const config = mlpConfig({ steps: 40, checkpointEvery: 20, diagnostics: { every: 10, adaptive: false } });
    const a = await runToEnd(config);
    const b = await runToEnd(config);
    const lossesA = stepsOf(a.records).map((s) => s.loss);
    assert.equal(lossesA.length, 40);
    assert.deepEqual(stepsOf(b.records).map((s) => s.loss), lossesA, 'deterministic');

    // Resume run b from its step-20 checkpoint: the 20 steps after it must equal run a's, bit for bit.
    const mid = join(b.session.paths.checkpoints, 'step-00000020.ckpt');
    const resumed = await runToEnd(config, tmp(), mid);
    assert.equal(resumed.session.paths.dir, b.session.paths.dir, 'resuming continues the same run folder');
    const starts = ofKind(resumed.records, 'run_started');
    assert.deepEqual([starts.length, starts[1].step, starts[1].resumedFrom], [2, 20, mid]);
    const afterResume = stepsOf(resumed.records.filter((r) => r.seq > starts[1].seq));
    assert.deepEqual(afterResume.map((s) => s.step), Array.from({ length: 20 }, (_, i) => 20 + i));
    assert.deepEqual(afterResume.map((s) => s.loss), lossesA.slice(20));
    // The noise windows come back from the checkpoint: the averages continue over the same measurements, not restart.
    const noiseAfter = (records: LogRecord[], from: number) => ofKind(records, 'noise').filter((r) => r.seq > from && r.step >= 20).map((r) => [r.step, r.layer, r.bSimple, r.windowCount]);
    const expected = noiseAfter(a.records, 0);
    assertAtLeast(expected.length, 2, `noise measured after step 20: ${expected.length}`);
    assert.deepEqual(noiseAfter(resumed.records, starts[1].seq), expected, 'noise estimates after resume equal the uninterrupted run\'s');
  });
});

describe('the CLI', () => {
  function startCli(args: string[]) {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = createInterface({ input: child.stdout });
    const first = new Promise<{ url: string; token: string; runDir: string }>((resolve) => lines.once('line', (l) => resolve(JSON.parse(l))));
    const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    return { child, first, exit };
  }

  function writeConfig(dir: string, config: Record<string, unknown>): string {
    const file = join(dir, 'test.muonscope.json');
    writeFileSync(file, JSON.stringify(config));
    return file;
  }

  const baseConfig = { name: 'cli', batchSize: 32, model: { type: 'mlp', hiddenDims: [32] }, task: { type: 'teacherStudent', inputDim: 16, outputDim: 4, teacherWidth: 16 }, compute: { backend: 'cpu' } };

  test('a bad config exits 2 naming every problem with its JSON path, and starts nothing', SLOW_TEST, async () => {
    const dir = tmp();
    const { exit, child } = startCli(['train', writeConfig(dir, { ...baseConfig, steps: -3, optimizer: { type: 'dynmuon', lr: 'fast' } }), '--out', join(dir, 'runs')]);
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    assert.equal(await within('the CLI to exit on a bad config', exit), 2);
    assert.match(err, /\$\.steps: /);
    assert.match(err, /\$\.optimizer\.lr: /);
    assert.equal(existsSync(join(dir, 'runs')), false);
  });

  test('SIGKILL mid-run leaves a readable log (torn line skipped) and the run resumes from its last checkpoint', SLOW_TEST, async () => {
    const dir = tmp();
    const { first, child, exit } = startCli(['train', writeConfig(dir, { ...baseConfig, steps: 1_000_000, checkpointEvery: 10 }), '--out', join(dir, 'runs')]);
    const { runDir, url, token } = await within("the CLI's listening line", first);
    assert.match(url, /^ws:\/\/127\.0\.0\.1:\d+$/);
    assert.match(token, /^[0-9a-f]{32}$/);
    const ckDir = join(runDir, 'checkpoints');
    await waitUntil('two checkpoints', () => listCheckpoints(ckDir), { until: (files) => files.length >= 2, intervalMs: 20 });
    child.kill('SIGKILL');
    await within('the CLI to die of SIGKILL', exit);
    appendFileSync(join(runDir, 'log.ndjson'), '{"seq":999999,"kind":"step","lo'); // as if killed mid-write
    const before = readRunLog(join(runDir, 'log.ndjson'));
    assert.match(before.skipped.at(-1)!.reason, /torn/);
    const lastCkptStep = Number(/step-(\d+)/.exec(listCheckpoints(ckDir)[0])![1]);

    const resumed = startCli(['train', '--resume', runDir, '--steps', String(lastCkptStep + 5)]);
    assert.equal((await within("the resumed CLI's listening line", resumed.first)).runDir, runDir);
    assert.equal(await within('the resumed CLI to finish its 5 steps', resumed.exit), 0);
    const after = readRunLog(join(runDir, 'log.ndjson'));
    assert.equal(after.skipped.length, 0, 'the torn line was cut off before appending');
    const restart = ofKind(after.records, 'run_started').at(-1)!;
    assert.equal(restart.step, lastCkptStep);
    assert.deepEqual(stepsOf(after.records.filter((r) => r.seq > restart.seq)).map((s) => s.step), [0, 1, 2, 3, 4].map((i) => lastCkptStep + i));
    assert.equal(ofKind(after.records, 'state').at(-1)!.state, 'finished');
    assert.ok(!readdirSync(runDir).includes('trainer.json'), 'the re-attach file is removed when the trainer exits');
  });

  test('SIGINT checkpoints and exits 0', SLOW_TEST, async () => {
    const dir = tmp();
    const { first, child, exit } = startCli(['train', writeConfig(dir, { ...baseConfig, steps: 1_000_000 }), '--out', join(dir, 'runs')]);
    const { runDir } = await within("the CLI's listening line", first);
    await waitUntil('a step in the log', () => readRunLog(join(runDir, 'log.ndjson')).records, { until: (records) => records.some((r) => r.kind === 'step'), intervalMs: 20 });
    child.kill('SIGINT');
    assert.equal(await within('the CLI to exit after SIGINT', exit), 0);
    const records = readRunLog(join(runDir, 'log.ndjson')).records;
    assert.equal(ofKind(records, 'state').at(-1)!.state, 'stopped');
    assert.match(ofKind(records, 'checkpoint').at(-1)!.reason, /signal SIGINT/);
  });
});

describe('a live run under a flood of malformed frames', () => {
  test('1000 bad frames get error replies, the server keeps serving, and the losses are those of an undisturbed run', SLOW_TEST, async () => {
    const config = mlpConfig({ steps: 60 });
    const clean = await runToEnd(config);
    const session = await startSession({ config, configDir: process.cwd(), runsRoot: tmp() });
    const client = await TestClient.connect(session.url, session.token);
    const frames = ['{', 'null', '[]', '{"type":"command"}', '{"type":"command","id":"x","command":{"kind":"set_lr","lr":"NaN"}}', '{"type":"subscribe","afterSeq":-1}', '\u0000\u0001', '{"__proto__":{"polluted":1}}'];
    const replies: Promise<unknown>[] = [];
    for (let i = 0; i < 1000; i++) {
      const frame = frames[i % frames.length];
      const id = `bad${i}`;
      replies.push(client.raw(frame.includes('"id":"x"') ? frame.replace('"x"', `"${id}"`) : frame, frame.includes('"id":"x"') ? id : undefined));
      if (i % 100 === 0) await new Promise((r) => setImmediate(r));
    }
    await session.done;
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    const losses = stepsOf(readRunLog(session.paths.log).records).map((s) => s.loss);
    assert.deepEqual(losses, stepsOf(clean.records).map((s) => s.loss), 'the run is unharmed');
    assert.equal(ofKind(readRunLog(session.paths.log).records, 'control').length, 0, 'no invalid command was applied');
    client.close();
  });
});

describe('diagnostics in the loop', () => {
  test('logs spectra, layer stats, curvature, noise and costs; O recovered from the weights follows the shaping φ_p of M', SLOW_TEST, async () => {
    const config = mlpConfig({
      steps: 64,
      // Without Nesterov the shaped matrix is M itself, so O's spectrum can be predicted from M's.
      optimizer: { type: 'dynmuon', mode: 'exact', method: 'exact', nesterov: false, schedule: { type: 'constant', p: -0.25 } },
      diagnostics: { every: 4, adaptive: false, microbatches: 4, topK: 2 },
    });
    const { records } = await runToEnd(config);
    const spectra = ofKind(records, 'spectra');
    const layers = ['mlp.layer0.weight', 'mlp.layer1.weight'];
    assert.deepEqual([...new Set(spectra.map((s) => s.layer))].sort(), layers, 'spectra for every matrix layer');
    assertAtLeast(ofKind(records, 'layer_stats').length, 8, 'layer stats at every diagnostics step');
    const curv = ofKind(records, 'curvature');
    assert.ok(curv.some((c) => c.layer === null && c.kappaUpdate !== undefined), 'whole-model curvature along the update');
    assert.ok(curv.some((c) => c.layer === null && c.etaStarBefore !== undefined && c.edgeAlongUpdate !== undefined), 'η* before the step and the edge along the update');
    assert.ok(curv.some((c) => c.layer === null && c.overshootSteps !== undefined && c.overshootSteps > 0), 'overshoot fraction');
    assert.ok(curv.some((c) => c.eigenvalues && c.eigenvalues.top.length === 3 && c.eigenvalues.hvps === 10), 'Lanczos eigenvalues');
    assert.ok(curv.some((c) => c.directions && c.directions.top.length === 2), 'curvature along singular directions');
    const fitted = curv.filter((c) => c.directions?.curvatureVsSigma);
    assert.ok(fitted.length > 0, 'the κ-vs-σ fit rides with the directions');
    for (const c of fitted) assert.deepEqual(c.directions!.curvatureVsSigma, curvatureVsSigmaFit([...c.directions!.top, ...c.directions!.bottom]), 'and is the fit of those directions');
    const noise = ofKind(records, 'noise');
    assert.ok(noise.some((n) => n.layer === null && n.bSimple !== null), 'overall gradient noise scale');
    const overall = noise.filter((n) => n.layer === null);
    assert.deepEqual(overall.map((n) => n.windowCount), overall.map((_, i) => i + 1), 'the window (1000 steps) holds every measurement so far');
    const snr = noise.filter((n) => n.snrTop);
    assertAbove(snr.length, 0, 'SNR along singular directions');
    for (const n of snr) {
      assert.equal(n.snrOf, 'batch', `step ${n.step}: the SNR is the batch's`);
      n.snrTop!.forEach((x, i) => assert.ok(n.snrTopLow![i] <= x && x <= n.snrTopHigh![i], `step ${n.step}: SNR ${x} inside [${n.snrTopLow![i]}, ${n.snrTopHigh![i]}]`));
    }
    assertAbove(ofKind(records, 'diagnostics_cost').length, 0, 'costs are reported');

    // Exact shaping maps each σ of M to φ(σ) = σ·(σ² + δ)^((p−1)/2), δ = (1e-3·σ_max)², then rescales:
    // the sorted spectrum of O, normalised by its largest value, equals the sorted φ(σ_M), normalised.
    // (For p < 0, φ is decreasing, so O's largest values come from M's smallest.)
    const last = spectra.filter((s) => s.layer === 'mlp.layer1.weight').at(-1)!;
    const delta = (1e-3 * last.M[0]) ** 2;
    const phi = last.M.map((s) => s * (s * s + delta) ** ((-0.25 - 1) / 2)).sort((a, b) => b - a);
    for (let i = 0; i < last.O.length; i++) {
      const want = phi[i] / phi[0];
      const got = last.O[i] / last.O[0];
      assertAtMost(Math.abs(got - want), 1e-4, `σ_${i}: ${got} vs ${want}`);
    }
  });
});

// Defaults from outside the config file (the extension's cadence setting, a hosted PyTorch run's budget)
// reach the run as part of its config, never as a command.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { TORCH_DIAGNOSTICS_BUDGET_PCT, withDefaultDiagnostic } from '../../trainer/run/config-defaults.js';

for (const [key, value, other] of [['every', 7, 'budgetPct'], ['budgetPct', TORCH_DIAGNOSTICS_BUDGET_PCT, 'every']] as const) {
  test(`a default diagnostics.${key} fills it only where the config leaves it out`, () => {
    const empty: Record<string, unknown> = {};
    withDefaultDiagnostic(empty, key, value);
    assert.deepEqual(empty, { diagnostics: { [key]: value } });
    const partial: Record<string, unknown> = { diagnostics: { [other]: 5 } };
    withDefaultDiagnostic(partial, key, value);
    assert.deepEqual(partial, { diagnostics: { [other]: 5, [key]: value } });
    const own: Record<string, unknown> = { diagnostics: { [key]: 3 } };
    withDefaultDiagnostic(own, key, value);
    assert.deepEqual(own, { diagnostics: { [key]: 3 } }, "the config's own value wins");
    for (const bad of ['often', [], null]) {
      const raw: Record<string, unknown> = { diagnostics: bad };
      withDefaultDiagnostic(raw, key, value);
      assert.deepEqual(raw, { diagnostics: bad }, 'left for the validator to report with its path');
    }
  });
}

test('muonscope train --default-diagnostics-every: in config.json and run_started, no control record', { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'muonscope-cfgdef-'));
  const config = join(dir, 'tiny.muonscope.json');
  writeFileSync(config, JSON.stringify({ name: 'tiny', steps: 3, model: { type: 'mlp', hiddenDims: [8] }, task: { type: 'teacherStudent', inputDim: 4, outputDim: 2, teacherWidth: 8 }, advisor: { mode: 'off' } }));
  execFileSync(process.execPath, ['dist/trainer/cli.js', 'train', config, '--out', join(dir, 'runs'), '--default-diagnostics-every', '7'], { stdio: 'pipe', timeout: 110_000 });
  const [runName] = readdirSync(join(dir, 'runs'));
  const runDir = join(dir, 'runs', runName);
  assert.equal(JSON.parse(readFileSync(join(runDir, 'config.json'), 'utf8')).diagnostics.every, 7);
  const records = readFileSync(join(runDir, 'log.ndjson'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind: string; config?: { diagnostics?: { every?: number } } });
  assert.equal(records.find((r) => r.kind === 'run_started')?.config?.diagnostics?.every, 7);
  const controls = records.filter((r) => r.kind === 'control');
  assert.deepEqual(controls, [], `no control records: ${JSON.stringify(controls)}`);
});

test('a bad --default-diagnostics-every is a usage error (exit 4), and nothing starts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'muonscope-cfgdef-'));
  let status = 0;
  let stderr = '';
  try {
    execFileSync(process.execPath, ['dist/trainer/cli.js', 'train', '--out', join(dir, 'runs'), '--default-diagnostics-every', 'often'], { stdio: 'pipe' });
  } catch (e) {
    status = (e as { status: number }).status;
    stderr = String((e as { stderr: Buffer }).stderr);
  }
  assert.equal(status, 4, stderr);
  assert.match(stderr, /--default-diagnostics-every must be a positive integer, got "often"/);
});

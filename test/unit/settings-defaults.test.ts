// One diagnostics cadence: the run config schema's default. The extension's muonscope.diagnosticsEvery
// setting has no number of its own (null: "use the run config's default"), and New Run Config leaves
// `every` out unless the user set the setting.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { starterConfig, stripLineComments, type StarterKind } from '../../extension/config-starter.js';
import { RunConfigSchema, validateRunConfig } from '../../trainer/run/config.js';

const ROOT = join(__dirname, '..', '..');
const schemaDefault = (RunConfigSchema.properties.diagnostics.properties.every as { default: number }).default;

function starterEvery(kind: StarterKind, setting: number | null): number {
  const result = validateRunConfig(JSON.parse(stripLineComments(starterConfig(kind, 'x', setting))));
  assert.ok(result.ok, `the ${kind} starter validates: ${JSON.stringify(!result.ok && result.issues)}`);
  return result.config.diagnostics.every;
}

describe('diagnostics cadence default', () => {
  test('the setting defaults to null (the run config decides) and accepts a whole number ≥ 1', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    const setting = pkg.contributes.configuration.properties['muonscope.diagnosticsEvery'];
    assert.equal(setting.default, null, `the setting's default is ${JSON.stringify(setting.default)}, not null`);
    assert.deepEqual(setting.type, ['integer', 'null'], `type ${JSON.stringify(setting.type)}`);
    assert.equal(setting.minimum, 1, `minimum ${setting.minimum}`);
  });

  test('the schema default is a whole number ≥ 1, and `{}` gets it', () => {
    assert.ok(Number.isInteger(schemaDefault) && schemaDefault >= 1, `schema default ${schemaDefault}`);
    const result = validateRunConfig({});
    assert.equal(result.ok && result.config.diagnostics.every, schemaDefault);
  });

  for (const kind of ['transformer', 'mlp'] as const) {
    test(`New Run Config (${kind}): no setting leaves \`every\` to the schema (${schemaDefault}); a setting is written`, () => {
      assert.doesNotMatch(stripLineComments(starterConfig(kind, 'x', null)), /"every"/, 'no cadence written without a setting');
      assert.equal(starterEvery(kind, null), schemaDefault, 'the trainer fills in the schema default');
      assert.equal(starterEvery(kind, 7), 7, 'the setting, when set, is the config value');
    });
  }
});

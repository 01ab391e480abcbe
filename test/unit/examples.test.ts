// examples/*.muonscope.json: each is a valid run config for the trainer (comments stripped by the
// trainer's own rule), the default-transformer example is exactly the default run, the text-file
// example's corpus loads from a path relative to the example, and the files are ones the extension
// picks up (activation, schema, CodeLens).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { stripLineComments } from '../../extension/config-starter.js';
import { TextFileTask } from '../../trainer/data/text-file.js';
import { validateRunConfig, type RunConfig } from '../../trainer/run/config.js';
import { resolveTaskPath } from '../../trainer/run/workloads.js';

const ROOT = join(__dirname, '..', '..');
const EXAMPLES = join(ROOT, 'examples');
const NAMES = ['default-transformer.muonscope.json', 'mlp-teacher-student.muonscope.json', 'text-file.muonscope.json'];

function loadExample(name: string): { raw: Record<string, unknown>; config: RunConfig } {
  const raw = JSON.parse(stripLineComments(readFileSync(join(EXAMPLES, name), 'utf8')));
  const result = validateRunConfig(raw);
  assert.ok(result.ok, `${name}: ${JSON.stringify(!result.ok && result.issues)}`);
  return { raw, config: result.config };
}

describe('example run configs', () => {
  test('the examples folder holds the three examples', () => {
    const found = readdirSync(EXAMPLES).filter((f) => f.endsWith('.muonscope.json')).sort();
    assert.deepEqual(found, NAMES, `found ${found}`);
  });

  for (const name of NAMES) {
    test(`${name} validates against the run config schema`, () => {
      loadExample(name);
    });
  }

  test('default-transformer is the default run spelled out: the same config as `{}` (but its name)', () => {
    const { raw, config } = loadExample('default-transformer.muonscope.json');
    const defaults = validateRunConfig({ name: raw.name });
    assert.ok(defaults.ok);
    assert.deepEqual(config, defaults.config);
  });

  test('mlp-teacher-student trains an MLP on the teacher–student task', () => {
    const { config } = loadExample('mlp-teacher-student.muonscope.json');
    assert.deepEqual([config.model.type, config.task.type], ['mlp', 'teacherStudent']);
  });

  test('text-file: the corpus resolves next to the example and loads as UTF-8 characters, non-ASCII ones included', () => {
    const { config } = loadExample('text-file.muonscope.json');
    assert.ok(config.task.type === 'textFile' && config.model.type === 'transformer', `task ${config.task.type}, model ${config.model.type}`);
    const path = resolveTaskPath(dirname(join(EXAMPLES, 'text-file.muonscope.json')), config.task.path);
    assert.equal(path, join(EXAMPLES, 'data', 'walking-notes.txt'));
    const bytes = statSync(path).size;
    assert.ok(bytes >= 10_000 && bytes <= 100_000, `a few tens of KB: ${bytes} bytes`);
    const task = new TextFileTask({ path, contextLength: config.model.contextLength, batchSize: config.batchSize, validationSize: 8, seed: config.seed });
    // The reference: the file decoded by Node and split into code points.
    const chars = Array.from(readFileSync(path, 'utf8'));
    assert.equal(task.tokens.length, chars.length, `tokens ${task.tokens.length}, characters ${chars.length}`);
    assert.equal(task.vocabSize, new Set(chars).size, `vocabulary ${task.vocabSize}`);
    assert.equal(task.decode(task.tokens), chars.join(''), 'decoding the tokens gives the text back');
    const nonAscii = task.alphabet.filter((c) => c.codePointAt(0)! > 0x7f);
    assert.ok(nonAscii.length >= 10, `non-ASCII characters in the vocabulary: ${nonAscii.join('')}`);
  });

  test('torch/run.muonscope.json is a PyTorch run config: its command starts train.py (next to it, where the extension runs it) for the config\'s steps', () => {
    const raw = JSON.parse(stripLineComments(readFileSync(join(EXAMPLES, 'torch', 'run.muonscope.json'), 'utf8')));
    const result = validateRunConfig(raw);
    assert.ok(result.ok, JSON.stringify(!result.ok && result.issues));
    const command = (result.config as { command?: string[] }).command;
    assert.ok(Array.isArray(command) && command[0] === 'python', `command ${JSON.stringify(command)}`);
    assert.equal(statSync(join(EXAMPLES, 'torch', command[1])).isFile(), true, `${command[1]} next to the config`);
    assert.equal(Number(command[command.indexOf('--steps') + 1]), result.config.steps, 'the script\'s --steps is the config\'s steps');
  });

  test('the extension picks the examples up: activation, schema validation, JSONC and CodeLens all match *.muonscope.json', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    assert.ok(pkg.activationEvents.includes('workspaceContains:**/*.muonscope.json'), `activation events ${pkg.activationEvents}`);
    assert.deepEqual(pkg.contributes.jsonValidation.map((v: { fileMatch: string }) => v.fileMatch), ['*.muonscope.json']);
    assert.ok(pkg.contributes.languages.some((l: { id: string; filenamePatterns?: string[] }) => l.id === 'jsonc' && l.filenamePatterns?.includes('*.muonscope.json')), 'opened as JSON with comments');
    const extension = readFileSync(join(ROOT, 'extension', 'extension.ts'), 'utf8');
    assert.match(extension, /registerCodeLensProvider\(\{ pattern: '\*\*\/\*\.muonscope\.json' \}/, 'the CodeLens provider is registered for **/*.muonscope.json');
  });
});

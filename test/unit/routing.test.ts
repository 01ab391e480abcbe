// Which parameter goes to which optimizer, and why.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMuonscopeError } from '../../common/errors.js';
import { routeParameters } from '../../trainer/optim/index.js';

const model = [
  { name: 'wte', shape: [100, 32] },
  { name: 'wpe', shape: [16, 32] },
  { name: 'block0/attn/qkv/kernel', shape: [32, 96] },
  { name: 'block0/attn/qkv/bias', shape: [96] },
  { name: 'block0/ln_1/gain', shape: [32] },
  { name: 'block0/mlp/fc/kernel', shape: [32, 128] },
  { name: 'lm_head/kernel', shape: [32, 100] },
  { name: 'conv/kernel', shape: [3, 3, 8, 16] },
  { name: 'final_norm/scale', shape: [32] },
];

test('hidden 2-D weights go to the matrix optimizer; embeddings, head, biases, gains and non-matrices to AdamW', () => {
  const routes = routeParameters(model);
  assert.deepEqual(
    Object.fromEntries(routes.map((r) => [r.name, r.route])),
    {
      wte: 'adamw',
      wpe: 'adamw',
      'block0/attn/qkv/kernel': 'matrix',
      'block0/attn/qkv/bias': 'adamw',
      'block0/ln_1/gain': 'adamw',
      'block0/mlp/fc/kernel': 'matrix',
      'lm_head/kernel': 'adamw',
      'conv/kernel': 'adamw',
      'final_norm/scale': 'adamw',
    },
  );
  const why = Object.fromEntries(routes.map((r) => [r.name, r.reason]));
  assert.match(why['wte'], /wte/);
  assert.match(why['conv/kernel'], /4-D/);
  assert.match(why['block0/mlp/fc/kernel'], /hidden 2-D/);
});

test('overrides come first, the first matching one wins, and their pattern is the reason', () => {
  const routes = routeParameters(model, [
    { pattern: '^lm_head', optimizer: 'matrix' },
    { pattern: 'mlp', optimizer: 'adamw' },
    { pattern: 'block0/.*kernel', optimizer: 'matrix' },
  ]);
  const r = Object.fromEntries(routes.map((x) => [x.name, x]));
  assert.equal(r['lm_head/kernel'].route, 'matrix');
  assert.equal(r['lm_head/kernel'].reason, 'override /^lm_head/');
  assert.equal(r['block0/mlp/fc/kernel'].route, 'adamw');
  assert.equal(r['block0/attn/qkv/kernel'].reason, 'override /block0/.*kernel/');
  assert.equal(r['wte'].route, 'adamw');
});

test('bad overrides are refused with the pattern or optimizer named', () => {
  const refuses = (code: string, mentions: string, fn: () => unknown) =>
    assert.throws(fn, (e: unknown) => isMuonscopeError(e) && e.code === code && e.message.includes(mentions));
  refuses('INVALID_ARGUMENT', '(unclosed', () => routeParameters(model, [{ pattern: '(unclosed', optimizer: 'adamw' }]));
  refuses('UNKNOWN_OPTIMIZER', 'sgd', () => routeParameters(model, [{ pattern: 'x', optimizer: 'sgd' as never }]));
  refuses('INVALID_ARGUMENT', 'conv/kernel', () => routeParameters(model, [{ pattern: 'conv', optimizer: 'matrix' }]));
});

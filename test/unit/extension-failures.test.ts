// What the extension tells a user when something goes sideways: why an attach failed, why a start
// failed (each trainer line once), and which runs a dashboard restores after a window reload.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { savedPanelRuns } from '../../common/dashboard-messages.js';
import { summariseFailure } from '../../extension/commands/failure-text.js';
import { classifyConnectError, classifyUpgradeResponse } from '../../extension/trainer-client.js';

const URL = 'ws://127.0.0.1:9';
const err = (message: string, code?: string) => Object.assign(new Error(message), code ? { code } : {});

test('a failed attach says what failed: unauthorised, refused, timed out, unreachable', () => {
  assert.equal(classifyUpgradeResponse(URL, 401).kind, 'unauthorised');
  assert.match(classifyUpgradeResponse(URL, 401).message, /wrong token/);
  assert.equal(classifyUpgradeResponse(URL, 403).kind, 'rejected');
  assert.equal(classifyConnectError(URL, err('connect ECONNREFUSED 127.0.0.1:9', 'ECONNREFUSED')).kind, 'refused');
  assert.equal(classifyConnectError(URL, err('Opening handshake has timed out')).kind, 'timed out');
  assert.equal(classifyConnectError(URL, err('getaddrinfo ENOTFOUND nohost', 'ENOTFOUND')).kind, 'unreachable');
  assert.equal(classifyConnectError(URL, err('socket hang up', 'ECONNRESET')).kind, 'failed');
});

test("a failed start lists each of the trainer's lines once", () => {
  const problems = ['config.json: 2 problems', '  /optimizer/lr: must be > 0', '  /steps: expected an integer'];
  // The launcher once passed these lines twice (collected early and again as the output's tail).
  const text = summariseFailure(new Error('the trainer exited before it was ready (exit code 2).'), [...problems, ...problems, '']);
  for (const p of problems) assert.equal(text.split(p.trim()).length - 1, 1, `"${p.trim()}" appears once in: ${text}`);
  assert.ok(text.startsWith('the trainer exited before it was ready (exit code 2). '), text);
});

test("a restored panel reads its runs from its page's own saved state", () => {
  const state = { view: 'overview', logY: true, runs: [{ runId: 'c', runDir: '/w/runs/c' }, { runId: 'a', runDir: '/w/runs/a' }] };
  assert.deepEqual(savedPanelRuns(state), state.runs);
  assert.equal(savedPanelRuns({ view: 'overview' }), undefined, 'an older page without runs');
  assert.equal(savedPanelRuns({ runs: [{ runId: 5 }] }), undefined, 'malformed state is not trusted');
  assert.equal(savedPanelRuns(undefined), undefined);
});

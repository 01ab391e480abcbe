// The trainer serves the dashboard to a browser: a strict-CSP page whose only connection is back to
// the trainer's own WebSocket, the bundle's files, and nothing else.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { dashboardHandler } from '../../trainer/server/dashboard-page.js';
import { SLOW_TEST } from '../helpers/wait.js';

let server: Server;
let base = '';
const dir = mkdtempSync(join(tmpdir(), 'muonscope-webview-'));

before(async () => {
  writeFileSync(join(dir, 'main.js'), 'console.log("dashboard")');
  writeFileSync(join(dir, 'main.css'), 'body{}');
  const handle = dashboardHandler(() => 'ws://127.0.0.1:4242', dir);
  server = createServer((req, res) => {
    if (!handle(req, res)) res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
after(() => new Promise<void>((r) => server.close(() => r())));

test('the page has a strict CSP with a nonce, connects only to the trainer, and loads only its own files', SLOW_TEST, async () => {
  const res = await fetch(`${base}/`);
  assert.equal(res.status, 200);
  const html = await res.text();
  const csp = /Content-Security-Policy" content="([^"]+)"/.exec(html)?.[1].replace(/&#39;|&apos;/g, "'") ?? '';
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'nonce-[A-Za-z0-9+/=]+'/);
  assert.match(csp, /connect-src ws:\/\/127\.0\.0\.1:4242/);
  assert.doesNotMatch(html, /https?:\/\/(?!127\.0\.0\.1)/, 'no remote resources');
  assert.match(html, /<script nonce="[^"]+" src="\/webview\/main\.js"><\/script>/);
  const nonces = [...html.matchAll(/nonce-([A-Za-z0-9+/=]+)/g)].map((m) => m[1]);
  const again = await (await fetch(`${base}/`)).text();
  assert.notEqual(/nonce-([A-Za-z0-9+/=]+)/.exec(again)?.[1], nonces[0], 'a fresh nonce per load');
});

test('serves the bundle files with their types and refuses everything else', SLOW_TEST, async () => {
  const js = await fetch(`${base}/webview/main.js`);
  assert.deepEqual([js.status, js.headers.get('content-type')], [200, 'text/javascript; charset=utf-8']);
  assert.equal(await js.text(), 'console.log("dashboard")');
  assert.equal((await fetch(`${base}/webview/main.css`)).status, 200);
  for (const path of ['/webview/../../etc/passwd', '/webview/other.js', '/package.json', '/%2e%2e/x']) {
    assert.equal((await fetch(`${base}${path}`)).status, 404, path);
  }
});

test('says how to build the bundle when it is missing', SLOW_TEST, async () => {
  const empty = mkdtempSync(join(tmpdir(), 'muonscope-empty-'));
  const handle = dashboardHandler(() => 'ws://127.0.0.1:1', empty);
  const s = createServer((req, res) => {
    if (!handle(req, res)) res.writeHead(404).end();
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const res = await fetch(`http://127.0.0.1:${(s.address() as { port: number }).port}/`);
  assert.equal(res.status, 503);
  assert.match(await res.text(), /esbuild/);
  await new Promise<void>((r) => s.close(() => r()));
});

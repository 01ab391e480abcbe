/**
 * Serves the dashboard to a plain browser from the trainer's own port: the same bundle the VS Code
 * webview runs, whose host adapter connects back to this server's WebSocket. The page carries no
 * secret: the token travels in the URL fragment (#token=…), which browsers never send to a server,
 * and the WebSocket refuses any connection without it.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { dashboardHtml } from '../../common/dashboard-page.js';

/** dist/webview beside the bundle (dist/trainer), or the built copy when running from source. */
export function webviewDir(): string {
  const candidates = [join(__dirname, '..', 'webview'), join(__dirname, '..', '..', 'dist', 'webview')];
  return candidates.find((d) => existsSync(join(d, 'main.js'))) ?? candidates[0];
}

const ASSETS: Record<string, string> = { '/webview/main.js': 'text/javascript; charset=utf-8', '/webview/main.css': 'text/css; charset=utf-8' };

export function dashboardHandler(wsUrl: () => string, dir = webviewDir()): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    if (req.method !== 'GET') return false;
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const headers = { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' };
    if (path === '/' || path === '/dashboard') {
      if (!existsSync(join(dir, 'main.js'))) {
        res.writeHead(503, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' }).end('the dashboard bundle is not built: run `node esbuild.mjs`\n');
        return true;
      }
      const html = dashboardHtml({
        scriptUri: '/webview/main.js',
        styleUri: existsSync(join(dir, 'main.css')) ? '/webview/main.css' : undefined,
        cspSource: "'self'",
        connectSrc: wsUrl(),
      });
      res.writeHead(200, { ...headers, 'Content-Type': 'text/html; charset=utf-8' }).end(html);
      return true;
    }
    if (path === '/favicon.ico') {
      res.writeHead(204, headers).end();
      return true;
    }
    const type = ASSETS[path];
    if (!type) return false;
    const file = join(dir, path.slice('/webview/'.length));
    if (!existsSync(file)) return false;
    res.writeHead(200, { ...headers, 'Content-Type': type }).end(readFileSync(file));
    return true;
  };
}

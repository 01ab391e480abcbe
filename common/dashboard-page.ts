/**
 * The dashboard's HTML shell, shared by the extension's webview panels and the page the trainer serves
 * in a browser: a strict CSP with a per-load nonce, one script, one stylesheet, no inline handlers and
 * no remote resources. Everything dynamic is added by the script with textContent, never as HTML.
 * The `csp-nonce` meta tag is where the webview UI toolkit looks for the nonce for the styles it
 * injects (vscode-webview-ui-toolkit#545).
 */
import { randomBytes } from 'node:crypto';

export interface DashboardHtmlOptions {
  /** URI of dist/webview/main.js as the page can load it (asWebviewUri in VS Code). */
  scriptUri: string;
  /** URI of dist/webview/main.css, emitted by esbuild beside the script when the dashboard imports CSS. */
  styleUri?: string;
  /** webview.cspSource in VS Code; the page's own origin ('self') in a browser. */
  cspSource: string;
  /** Only for the browser page, which talks to the trainer itself: e.g. `ws://127.0.0.1:8765`. */
  connectSrc?: string;
  title?: string;
  nonce?: string;
}

export function makeNonce(): string {
  return randomBytes(16).toString('base64');
}

function attr(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function dashboardHtml(o: DashboardHtmlOptions): string {
  const nonce = o.nonce ?? makeNonce();
  const csp = [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    `style-src ${o.cspSource} 'nonce-${nonce}'`,
    `img-src ${o.cspSource} data:`,
    `font-src ${o.cspSource}`,
    ...(o.connectSrc ? [`connect-src ${o.connectSrc}`] : []),
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${attr(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<meta property="csp-nonce" content="${attr(nonce)}">
${o.styleUri ? `<link rel="stylesheet" href="${attr(o.styleUri)}" nonce="${attr(nonce)}">` : ''}
<title>${attr(o.title ?? 'Muonscope')}</title>
</head>
<body>
<div id="app" role="application" aria-label="Muonscope dashboard"></div>
<script nonce="${attr(nonce)}" src="${attr(o.scriptUri)}"></script>
</body>
</html>
`;
}

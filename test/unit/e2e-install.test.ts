/**
 * The VS Code suite installs code-server with an inner `npm install`. It must not inherit what an outer
 * `npm run` exports: code-server's postinstall reads Node's version from `npm_config_user_agent` and refused
 * to build when the outer npm ran on Node 20, which only a warm cache had hidden.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cleanInstallEnv } from '../vscode/install.js';

test('the inner npm install gets none of the outer npm run variables', () => {
  const outer = {
    PATH: '/usr/bin',
    HOME: '/home/u',
    npm_config_user_agent: 'npm/11.19.1 node/v20.20.2 linux x64',
    npm_lifecycle_event: 'test:vscode',
    NPM_CONFIG_PREFIX: '/x',
    npm_node_execpath: '/usr/bin/node',
    INIT_CWD: '/repo',
    NODE: '/usr/bin/node',
  };
  const env = cleanInstallEnv(outer, { PATH: '/node24/bin:/usr/bin', npm_config_nodedir: '/node24' });
  assert.deepEqual(env, { PATH: '/node24/bin:/usr/bin', HOME: '/home/u', npm_config_nodedir: '/node24' });
});

// Builds the three bundles: the trainer (node), the extension host (node, cjs, `vscode` external) and
// the dashboard webview (browser). Packages with native binaries stay external (onnxruntime-node, the
// TF.js native bindings); TF.js core, its gradients and the wasm/cpu backends are bundled from their ES
// modules (`mainFields`), so the bundle holds exactly one copy of core. A native TF.js package loaded at
// runtime brings its own copy, which shares the engine and registries: tfjs-core keeps them global.
import * as esbuild from 'esbuild';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, 'dist');
const watch = process.argv.includes('--watch');
const production = process.argv.includes('--production');

const nodeExternals = ['onnxruntime-node', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu'];

const common = { bundle: true, sourcemap: !production, minify: production, logLevel: 'warning' };

const builds = [
  {
    ...common,
    entryPoints: { cli: join(root, 'trainer/cli.ts'), index: join(root, 'trainer/index.ts') },
    outdir: join(dist, 'trainer'),
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external: nodeExternals,
    mainFields: ['module', 'main'],
    banner: { js: '#!/usr/bin/env node' },
  },
  {
    ...common,
    entryPoints: { extension: join(root, 'extension/extension.ts') },
    outdir: dist,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external: ['vscode', ...nodeExternals],
    mainFields: ['module', 'main'],
  },
  {
    ...common,
    entryPoints: { main: join(root, 'webview/main.ts') },
    outdir: join(dist, 'webview'),
    platform: 'browser',
    format: 'iife',
    target: 'es2022',
    loader: { '.css': 'css' },
  },
].filter((b) => Object.values(b.entryPoints).every((p) => existsSync(p)));

function copyWasmBinaries() {
  const from = join(root, 'node_modules/@tensorflow/tfjs-backend-wasm/dist');
  const to = join(dist, 'trainer');
  mkdirSync(to, { recursive: true });
  for (const f of readdirSync(from).filter((f) => f.endsWith('.wasm'))) cpSync(join(from, f), join(to, f));
}

/** The run-config JSON Schema, generated from the one TypeBox definition, for editors (jsonValidation). */
function writeConfigSchema() {
  const trainer = createRequire(import.meta.url)(join(dist, 'trainer', 'index.js'));
  writeFileSync(join(dist, 'run-config.schema.json'), JSON.stringify(trainer.runConfigJsonSchema(), null, 1) + '\n');
}

// `vsce package` stages onnxruntime-node into dist/node_modules (extension/scripts/stage-native-runtime.mjs);
// a development build drops that copy so the trainer loads the installed package, never a stale one.
if (!production) rmSync(join(dist, 'node_modules'), { recursive: true, force: true });

if (watch) {
  for (const b of builds) await (await esbuild.context(b)).watch();
} else {
  await Promise.all(builds.map((b) => esbuild.build(b)));
  writeConfigSchema();
}
copyWasmBinaries();

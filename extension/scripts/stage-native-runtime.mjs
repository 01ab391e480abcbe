// Runs as `vscode:prepublish`, after the production build and before vsce collects files.
//
// The trainer bundle requires onnxruntime-node at runtime (native binaries cannot be bundled), but
// `vsce package --no-dependencies` never looks inside the top-level node_modules. So the runtime files
// are copied to dist/node_modules, where Node's resolution from dist/trainer/cli.js finds them: only
// onnxruntime-node's JS, its package.json and the binaries of the target platform, plus the one package
// it requires at runtime (onnxruntime-common, CommonJS build). Its install-time dependencies stay out.
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const target = process.env.MUONSCOPE_TARGET ?? 'linux-x64';
const [os, arch] = target.split('-');
const from = (p) => join(root, 'node_modules', p);
const to = join(root, 'dist', 'node_modules');

rmSync(to, { recursive: true, force: true });
const copies = [
  ['onnxruntime-node/package.json'],
  ['onnxruntime-node/dist'],
  [`onnxruntime-node/bin/napi-v6/${os}/${arch}`],
  ['onnxruntime-common/package.json'],
  ['onnxruntime-common/dist/cjs'],
];
for (const [p] of copies) {
  if (!existsSync(from(p))) throw new Error(`stage-native-runtime: ${from(p)} is missing (is onnxruntime-node installed, with ${target} binaries?)`);
  mkdirSync(dirname(join(to, p)), { recursive: true });
  cpSync(from(p), join(to, p), { recursive: true });
}
// onnxruntime-common's `exports` also names its ESM build, which is not shipped; the trainer is CommonJS.
const commonPkg = join(to, 'onnxruntime-common/package.json');
const pkg = JSON.parse(readFileSync(commonPkg, 'utf8'));
if (pkg.exports) pkg.exports = { require: './dist/cjs/index.js', default: './dist/cjs/index.js' };
delete pkg.module;
writeFileSync(commonPkg, JSON.stringify(pkg, null, 2) + '\n');
console.log(`staged onnxruntime-node (${target}) into ${to}`);

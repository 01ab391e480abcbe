// Who may import whom. The extension, the dashboard (webview/) and the trainer share only common/; common/
// imports none of them; and whatever the dashboard bundles runs in a browser, so it must not reach Node.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';

const root = resolve(__dirname, '..', '..');
const PARTS = ['extension', 'webview', 'trainer', 'common'] as const;
type Part = (typeof PARTS)[number];

/** The parts each part must not import from. */
const FORBIDDEN: Record<Part, readonly Part[]> = {
  extension: ['trainer', 'webview'],
  webview: ['trainer', 'extension'],
  trainer: ['extension', 'webview'],
  common: ['trainer', 'extension', 'webview'],
};

/** The common/ modules that run only in Node (the extension host and the trainer); the rest of common/ is bundled into the dashboard. */
const NODE_ONLY_COMMON = [/^common\/dashboard-page\.ts$/, /^common\/run-folder\//];

interface ImportSite {
  /** Repo-relative, with forward slashes. */
  file: string;
  line: number;
  specifier: string;
}

interface Violation extends ImportSite {
  rule: string;
}

const posix = (p: string) => p.split(sep).join('/');
const partOf = (path: string): Part | undefined => PARTS.find((p) => path === p || path.startsWith(`${p}/`));
const isNodeOnlyCommon = (path: string) => NODE_ONLY_COMMON.some((re) => re.test(path));
const isBrowserBundled = (file: string) => file.startsWith('webview/') || (file.startsWith('common/') && !isNodeOnlyCommon(file));
const isNodeBuiltin = (specifier: string) => specifier.startsWith('node:') || builtinModules.includes(specifier.split('/')[0]);

/** Every module specifier in a file: import and export-from statements, `import x = require()`, `import()` and `import('…')` types. */
function importSites(file: string, text: string): ImportSite[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const sites: ImportSite[] = [];
  const add = (node: ts.Node, specifier: ts.Node | undefined) => {
    if (!specifier || !ts.isStringLiteralLike(specifier)) return;
    sites.push({ file, line: source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1, specifier: specifier.text });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) add(node, node.moduleSpecifier);
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) add(node, node.moduleReference.expression);
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) add(node, node.arguments[0]);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node, node.argument.literal);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return sites;
}

/** The rules one import breaks (usually none). */
function rulesBroken({ file, specifier }: ImportSite): string[] {
  const from = partOf(file);
  if (!from) return [];
  const broken: string[] = [];
  if (specifier.startsWith('.')) {
    const target = posix(relative(root, resolve(root, dirname(file), specifier))).replace(/\.js$/, '.ts');
    const to = partOf(target);
    if (to && FORBIDDEN[from].includes(to)) broken.push(`${from}/ must not import from ${to}/`);
    if (isBrowserBundled(file) && isNodeOnlyCommon(target)) broken.push(`${file} is bundled into the dashboard, ${target} runs only in Node`);
  } else {
    if (isBrowserBundled(file) && isNodeBuiltin(specifier)) broken.push(`${file} is bundled into the dashboard, which has no Node built-ins`);
    if (specifier === 'vscode' && from !== 'extension') broken.push('only the extension runs inside VS Code');
  }
  return broken;
}

function violations(files: { file: string; text: string }[]): Violation[] {
  return files.flatMap(({ file, text }) => importSites(file, text).flatMap((site) => rulesBroken(site).map((rule) => ({ ...site, rule }))));
}

function sourceFiles(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

const describe = (list: Violation[]) => list.map((v) => `${v.file}:${v.line} imports ${v.specifier}: ${v.rule}`).join('\n');

test('the four parts import only what the architecture allows', () => {
  const files = PARTS.flatMap(sourceFiles).map((file) => ({ file, text: readFileSync(join(root, file), 'utf8') }));
  const scanned = files.map(({ file, text }) => importSites(file, text).length).reduce((a, b) => a + b, 0);
  // A scanner that finds nothing would pass vacuously; the repo has hundreds of imports.
  assert.ok(files.length > 100 && scanned > 500, `scanned ${files.length} files and ${scanned} imports`);
  const found = violations(files);
  assert.equal(found.length, 0, `imports that break the architecture:\n${describe(found)}`);
});

test('each rule catches its kind of import, with the file, line and target', () => {
  const planted = [
    { file: 'extension/a.ts', text: "import { x } from '../trainer/run/session.js';\n" },
    { file: 'extension/b.ts', text: "// one\nexport { h } from '../webview/dom.js';\n" },
    { file: 'webview/c.ts', text: "import type {\n  T,\n} from '../trainer/protocol.js';\n" },
    { file: 'webview/d.ts', text: "const m = await import('../extension/relay.js');\n" },
    { file: 'trainer/e.ts', text: "import '../webview/style.css';\n" },
    { file: 'common/f.ts', text: "export * from '../trainer/errors.js';\n" },
    { file: 'common/g.ts', text: "import { readFileSync } from 'node:fs';\nimport { join } from 'path';\n" },
    { file: 'common/h.ts', text: "import { RunLog } from './run-folder/log.js';\n" },
    { file: 'webview/i.ts', text: "type D = typeof import('../common/dashboard-page.js');\n" },
    { file: 'trainer/j.ts', text: "import * as vscode from 'vscode';\n" },
  ];
  const found = violations(planted);
  assert.deepEqual(
    found.map((v) => `${v.file}:${v.line} ${v.specifier}`),
    [
      'extension/a.ts:1 ../trainer/run/session.js',
      'extension/b.ts:2 ../webview/dom.js',
      'webview/c.ts:1 ../trainer/protocol.js',
      'webview/d.ts:1 ../extension/relay.js',
      'trainer/e.ts:1 ../webview/style.css',
      'common/f.ts:1 ../trainer/errors.js',
      'common/g.ts:1 node:fs',
      'common/g.ts:2 path',
      'common/h.ts:1 ./run-folder/log.js',
      'webview/i.ts:1 ../common/dashboard-page.js',
      'trainer/j.ts:1 vscode',
    ],
    describe(found),
  );
  const allowed = [
    { file: 'extension/k.ts', text: "import { runPaths } from '../common/run-folder/layout.js';\nimport * as vscode from 'vscode';\nimport { join } from 'node:path';\n" },
    { file: 'common/dashboard-page.ts', text: "import { randomBytes } from 'node:crypto';\n" },
    { file: 'common/run-folder/log.ts', text: "import { openSync } from 'node:fs';\nimport { validateLogRecord } from '../protocol.js';\n" },
    { file: 'webview/l.ts', text: "import { evaluate } from '../common/schedules.js';\nimport { Type } from '@sinclair/typebox';\n" },
    { file: 'trainer/m.ts', text: "import { RunLog } from '../common/run-folder/log.js';\nimport { readFileSync } from 'node:fs';\n" },
  ];
  assert.deepEqual(violations(allowed), [], describe(violations(allowed)));
});

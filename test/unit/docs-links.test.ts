// Every citation of the project's docs resolves. Code and docs cite pages as `docs/<page>.md`, optionally
// followed by section numbers (`§4`, `§2, §5`, `§3–§6`, `§4.6`); markdown files in docs/ and the README link
// to each other by relative path, optionally with a `#heading` anchor. A citation of a page, section or
// heading that does not exist, a page cited without its `docs/` folder, or a relative `.md` path in code
// that leaves the repository (as into a sibling checkout) fails with the file and line.
//
// Section convention (docs/algorithms.md and the other pages): `## N. Title` for §N, `### N.M Title` for
// §N.M. Anchors follow GitHub's heading slugs.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { test } from 'node:test';

const root = resolve(__dirname, '..', '..');
const SCANNED_EXTENSIONS = ['.ts', '.mjs', '.py', '.md'];
/** This file plants broken citations on purpose, to show the checker catches them. */
const SELF = 'test/unit/docs-links.test.ts';
/** Build outputs, dependencies, generated results and test artifacts: not the project's own text. */
const SKIPPED_DIRS = new Set(['node_modules', 'dist', '.git', 'test/bench/results', 'test/browser/artifacts', 'test/vscode/artifacts', 'runs', '.muonscope-cache', '.venv']);

interface Problem {
  file: string;
  line: number;
  reference: string;
  reason: string;
}

/** Reads repo-relative paths; `exists` answers for files and folders. Tests plant their own. */
interface Repo {
  read(path: string): string | undefined;
  exists(path: string): boolean;
}

const posix = (p: string) => p.split(sep).join('/');
const isCode = (file: string) => !file.endsWith('.md');
const lineOf = (text: string, index: number) => text.slice(0, index).split('\n').length;

/**
 * GitHub's anchor for a heading: lower case, markdown emphasis and code marks and every character that is
 * not a letter, digit, space, hyphen or underscore dropped, spaces to hyphens (not collapsed).
 */
export function headingSlug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

/** The anchors of a markdown text; a repeated heading gets -1, -2, … as on GitHub. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*```/.test(line)) fenced = !fenced;
    const m = fenced ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const slug = headingSlug(m[1]);
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    anchors.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return anchors;
}

/** Whether `markdown` has the section §`number`: `## N.` for N, `### N.M` for N.M. */
function hasSection(markdown: string, number: string): boolean {
  const depth = number.includes('.') ? '###' : '##';
  const escaped = number.replace('.', '\\.');
  return new RegExp(`^${depth} ${escaped}${number.includes('.') ? ' ' : '\\. '}`, 'm').test(markdown);
}

/** `§2, §4`, `§3–§6` (every section in between), `§4.6`: the section numbers a citation names. */
function sectionsNamed(list: string): string[] {
  const out: string[] = [];
  const re = /§(\d+(?:\.\d+)?)(?:\s*[–-]\s*§(\d+))?/g;
  for (let m = re.exec(list); m; m = re.exec(list)) {
    if (m[2] === undefined || m[1].includes('.')) out.push(m[1], ...(m[2] ? [m[2]] : []));
    else for (let n = Number(m[1]); n <= Number(m[2]); n++) out.push(String(n));
  }
  return out;
}

/** `docs/<page>.md` with the sections after it, anywhere in a file (code comments, strings, prose). */
function docCitations(file: string, text: string, repo: Repo): Problem[] {
  const problems: Problem[] = [];
  const re = /(?<![\w./-])docs\/([\w.-]+\.md)((?:\s*(?:,|and)?\s*§\d+(?:\.\d+)?(?:\s*[–-]\s*§\d+)?)*)/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const page = `docs/${m[1]}`;
    const at = { file, line: lineOf(text, m.index), reference: m[0].trim() };
    const target = repo.read(page);
    if (target === undefined) {
      problems.push({ ...at, reason: `${page} does not exist` });
      continue;
    }
    for (const n of sectionsNamed(m[2])) if (!hasSection(target, n)) problems.push({ ...at, reason: `${page} has no section §${n} (a heading "${n.includes('.') ? '###' : '##'} ${n}${n.includes('.') ? ' ' : '. '}…")` });
  }
  return problems;
}

/** In code: a docs page named without its folder (`algorithms.md`), or a relative `.md` path that does not resolve inside the repo. */
function codeCitations(file: string, text: string, repo: Repo): Problem[] {
  const problems: Problem[] = [];
  const bare = /(?<![\w./-])([\w-]+\.md)\b/g;
  for (let m = bare.exec(text); m; m = bare.exec(text)) {
    if (m[1] !== 'README.md' && repo.exists(`docs/${m[1]}`)) {
      problems.push({ file, line: lineOf(text, m.index), reference: m[1], reason: `cite it as docs/${m[1]}` });
    }
  }
  const relativePath = /(?<![\w./-])((?:\.\.?\/)+[\w./-]+\.md)\b/g;
  for (let m = relativePath.exec(text); m; m = relativePath.exec(text)) {
    const target = posix(relative(root, resolve(root, dirname(file), m[1])));
    const reason = target.startsWith('..') ? 'points outside the repository' : repo.exists(target) ? null : `${target} does not exist`;
    if (reason) problems.push({ file, line: lineOf(text, m.index), reference: m[1], reason });
  }
  return problems;
}

/** Relative links `[text](path#anchor)` in a markdown file, outside code spans and fences. */
function markdownLinks(file: string, text: string, repo: Repo): Problem[] {
  const problems: Problem[] = [];
  const prose = text.replace(/```[\s\S]*?```/g, (block) => block.replace(/[^\n]/g, ' ')).replace(/`[^`\n]*`/g, (span) => ' '.repeat(span.length));
  const re = /\[[^\]\n]*\]\(([^)\s]+)\)/g;
  for (let m = re.exec(prose); m; m = re.exec(prose)) {
    const href = m[1];
    if (/^[a-z][a-z0-9+.-]*:/i.test(href)) continue; // https:, mailto:, vscode: …
    const [path, anchor] = href.split('#', 2) as [string, string | undefined];
    const target = path === '' ? file : posix(relative(root, resolve(root, dirname(file), decodeURIComponent(path))));
    const at = { file, line: lineOf(prose, m.index), reference: href };
    if (target.startsWith('..')) problems.push({ ...at, reason: 'points outside the repository' });
    else if (!repo.exists(target)) problems.push({ ...at, reason: `${target} does not exist` });
    else if (anchor !== undefined) {
      const markdown = target.endsWith('.md') ? repo.read(target) : undefined;
      if (markdown === undefined) problems.push({ ...at, reason: `#${anchor} on ${target}, which is not a markdown file` });
      else if (!anchorsOf(markdown).has(anchor)) problems.push({ ...at, reason: `${target} has no heading with anchor #${anchor}` });
    }
  }
  return problems;
}

/** Every problem in the given files, once each (a markdown link to docs/… is also a citation); links are checked in docs/ and the README. */
export function docsProblems(files: string[], repo: Repo): Problem[] {
  const all = files.flatMap((file) => {
    const text = repo.read(file) ?? '';
    return [
      ...docCitations(file, text, repo),
      ...(isCode(file) ? codeCitations(file, text, repo) : []),
      ...(file === 'README.md' || file.startsWith('docs/') ? markdownLinks(file, text, repo) : []),
    ];
  });
  const seen = new Set<string>();
  return all.filter((p) => {
    const key = `${p.file}:${p.line}:${p.reference}`;
    return !seen.has(key) && seen.add(key);
  });
}

function scannedFiles(dir = ''): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.isDirectory()) return SKIPPED_DIRS.has(path) || SKIPPED_DIRS.has(entry.name) ? [] : scannedFiles(path);
    return path !== SELF && SCANNED_EXTENSIONS.some((ext) => entry.name.endsWith(ext)) ? [path] : [];
  });
}

const diskRepo: Repo = {
  read: (path) => {
    const full = join(root, path);
    return existsSync(full) && statSync(full).isFile() ? readFileSync(full, 'utf8') : undefined;
  },
  exists: (path) => existsSync(join(root, path)),
};

/** A planted repository in memory, for checking that each kind of broken citation is caught. */
function memoryRepo(files: Record<string, string>): Repo {
  return {
    read: (path) => files[path],
    exists: (path) => path in files || Object.keys(files).some((f) => f.startsWith(`${path}/`)),
  };
}

const describeProblems = (list: Problem[]) => list.map((p) => `${p.file}:${p.line}: ${p.reference} — ${p.reason}`).join('\n');

test('every docs citation in code and docs, and every relative link in docs/ and the README, resolves', () => {
  const files = scannedFiles();
  const docs = files.filter((f) => f.startsWith('docs/'));
  // A scan that sees nothing would pass vacuously.
  assert.ok(files.length > 150 && docs.length >= 8, `scanned ${files.length} files, ${docs.length} in docs/`);
  const problems = docsProblems(files, diskRepo);
  assert.equal(problems.length, 0, `citations that do not resolve:\n${describeProblems(problems)}`);
});

test('the checker catches each kind of broken citation, with file and line', () => {
  const repo = memoryRepo({
    'docs/algorithms.md': ['# Algorithms', '## 1. Muon', '### 1.2 Newton–Schulz', '## 2. DynMuon', '## 3. Linear algebra', '## 4. Curvature', ''].join('\n'),
    'docs/protocol.md': '# Protocol\n## 6. Dashboard ↔ host messages\n',
    'docs/README.md': [
      '[ok](algorithms.md#12-newtonschulz) [ok](protocol.md#6-dashboard--host-messages) [ok](../README.md)',
      '[gone](missing.md) [bad anchor](algorithms.md#9-limits) [outside](../../elsewhere/notes.md)',
      '`[in code](nowhere.md)`',
      '',
    ].join('\n'),
    'README.md': '# Project\n[docs](docs/README.md) [no such](docs/nope.md)\n',
    'trainer/a.ts': [
      '// fine: docs/algorithms.md §2, §4 and docs/algorithms.md §1–§3 and docs/algorithms.md §1.2',
      '// docs/algorithms.md §5 is missing, and so is docs/algorithms.md §2.1',
      '// docs/readings.md',
      '// (algorithms.md §2) needs its folder',
      '// per ../../shared/docs/e2e.md: outside',
      '// ./b.md does not exist',
      '',
    ].join('\n'),
  });
  const found = docsProblems(['docs/README.md', 'README.md', 'trainer/a.ts'], repo);
  assert.deepEqual(
    found.map((p) => `${p.file}:${p.line} ${p.reference}`),
    [
      'docs/README.md:2 missing.md',
      'docs/README.md:2 algorithms.md#9-limits',
      'docs/README.md:2 ../../elsewhere/notes.md',
      'README.md:2 docs/nope.md',
      'trainer/a.ts:2 docs/algorithms.md §5',
      'trainer/a.ts:2 docs/algorithms.md §2.1',
      'trainer/a.ts:3 docs/readings.md',
      'trainer/a.ts:4 algorithms.md',
      'trainer/a.ts:5 ../../shared/docs/e2e.md',
      'trainer/a.ts:6 ./b.md',
    ],
    describeProblems(found),
  );
  assert.match(found[4].reason, /no section §5/);
  assert.match(found[8].reason, /outside the repository/);
});

test('heading anchors follow GitHub: punctuation and code marks dropped, spaces kept as hyphens', () => {
  const cases: [string, string][] = [
    ['4. Security', '4-security'],
    ['6. Dashboard ↔ host messages', '6-dashboard--host-messages'],
    ['5. `trainer.json`', '5-trainerjson'],
    ["2.1 TF.js-wasm's transposed matmul is slow", '21-tfjs-wasms-transposed-matmul-is-slow'],
    ['4. The VS Code end-to-end suite (`npm run test:vscode`)', '4-the-vs-code-end-to-end-suite-npm-run-testvscode'],
  ];
  assert.deepEqual(cases.map(([h]) => headingSlug(h)), cases.map(([, slug]) => slug));
});

/**
 * `npm run build`'s second step: packs the compiled executables' modules
 * (dist/bin, dist/src) into dist/blockemu.bundle.cjs, then starts a daemon
 * from it once so that V8's code cache of what a start compiles can be
 * written beside it (bin/launch.ts loads both).
 *
 * Each ES module is turned into a CommonJS function by TypeScript's own
 * transpiler. Its output reads imports through the module object at each
 * use (`m_1.name`), so bindings stay live and import cycles behave as they
 * do between ES modules; dynamic imports become requires that run the
 * module when first asked for, so lazy loading is kept. The CommonJS
 * packages of INLINED_PACKAGES go in as they are published (comments
 * removed); other packages and node: built-ins stay outside, loaded by
 * Node's require.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative, sep } from 'node:path';
import ts from 'typescript';
import { BUNDLE, CODE_CACHE, WRITE_CACHE_ENV } from '../bin/launch.js';

const DIST = dirname(BUNDLE);
const ENTRIES = ['bin/cli.js', 'bin/system-cli.js'];
/**
 * CommonJS packages whose files go into the bundle too, so that V8's code
 * cache covers them: commander, left to Node's require, cost every tool
 * call about 7 ms of resolving, reading and compiling its six files.
 */
const INLINED_PACKAGES = ['commander'];

/** Names the CommonJS form gives a meaning: TypeScript writes `exports.x` for an export even where a local `exports` hides the module's. */
const RESERVED = new Set(['exports', 'require', 'module', '__load', '__meta', '__metaOf']);

/** Refuses a module that names a binding as the CommonJS wrapper does: it would be silently miscompiled. */
function checkNames(id: string, text: string): void {
  const file = ts.createSourceFile(id, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.JS);
  const visit = (node: ts.Node): void => {
    if (ts.isIdentifier(node) && RESERVED.has(node.text)) {
      const p = node.parent;
      const isMemberName = (ts.isPropertyAccessExpression(p) && p.name === node) || ((ts.isPropertyAssignment(p) || ts.isMethodDeclaration(p) || ts.isPropertyDeclaration(p)) && p.name === node);
      if (!isMemberName) {
        const { line } = file.getLineAndCharacterOfPosition(node.getStart());
        throw new Error(`${id}:${line + 1}: '${node.text}' names a binding; the bundle's CommonJS form reserves it (rename it)`);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
}

/** One module as a CommonJS function body, its relative requires already resolved to bundle ids; those ids. */
async function transpile(id: string): Promise<{ body: string; deps: string[] }> {
  const esm = await readFile(join(DIST, id), 'utf8');
  checkNames(id, esm);
  // import.meta has no CommonJS form: a module that uses it gets its own file's values.
  const source = esm.replaceAll('import.meta.url', '__meta.url').replaceAll('import.meta.dirname', '__meta.dirname');
  if (source.includes('import.meta')) throw new Error(`${id}: import.meta other than .url and .dirname cannot be bundled`);
  const out = ts.transpileModule(source, {
    fileName: id,
    reportDiagnostics: true,
    // No comments: the whole file is read and scanned at every start.
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, sourceMap: false, removeComments: true },
  });
  const errors = (out.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (errors.length) throw new Error(`${id}: ${ts.flattenDiagnosticMessageText(errors[0]!.messageText, '\n')}`);
  const deps: string[] = [];
  // Resolved here rather than at every start (no path arithmetic per require at run time).
  let body = out.outputText.replace(/^\/\/# sourceMappingURL=.*$/m, '');
  for (const name of INLINED_PACKAGES) {
    const dep = packageEntry(name);
    const uses = body.split(new RegExp(`\\brequire\\((["'])${name}\\1\\)`));
    if (uses.length > 1) deps.push(dep);
    // split() also returned each match's quote: drop them.
    body = uses.filter((_, i) => i % 2 === 0).join(`__load(${JSON.stringify(dep)})`);
  }
  body = body.replace(/\brequire\((["'])(\.\.?\/[^"']+)\1\)/g, (_, _q: string, spec: string) => {
    const dep = posix.join(posix.dirname(id), spec);
    deps.push(dep);
    return `__load(${JSON.stringify(dep)})`;
  });
  if (source.includes('__meta.')) body = `const __meta = __metaOf(${JSON.stringify(id)});\n${body}`;
  return { body, deps };
}

/** Where each inlined package's files are: bundle id `pkg:NAME/` → its directory. */
const packageRoots = new Map<string, string>();
/** Each inlined package's entry id, resolved once. */
const packageEntries = new Map<string, string>();

/** An inlined package's entry, as the bundled modules' require would resolve it, as a bundle id (`pkg:commander/index.js`). */
function packageEntry(name: string): string {
  const known = packageEntries.get(name);
  if (known) return known;
  const entry = createRequire(join(DIST, 'bin', 'cli.js')).resolve(name);
  let root = dirname(entry);
  while (!existsSync(join(root, 'package.json'))) {
    if (dirname(root) === root) throw new Error(`bundle: no package.json above ${entry}`);
    root = dirname(root);
  }
  packageRoots.set(`pkg:${name}/`, root);
  const id = packageFileId(name, root, entry);
  packageEntries.set(name, id);
  return id;
}

const packageFileId = (name: string, root: string, file: string): string => `pkg:${name}/${relative(root, file).split(sep).join('/')}`;

/**
 * One file of an inlined CommonJS package, its relative requires resolved
 * (at build time, by Node's own resolution) to bundle ids; those ids.
 * Its other requires (node: built-ins) stay Node's.
 */
async function packageModule(id: string): Promise<{ body: string; deps: string[] }> {
  const name = id.slice(4, id.indexOf('/'));
  const root = packageRoots.get(`pkg:${name}/`)!;
  const file = join(root, id.slice(id.indexOf('/') + 1));
  // Its comments go (the whole bundle is read at every start); the code is as published.
  const text = ts.transpileModule(await readFile(file, 'utf8'), { fileName: file, compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, removeComments: true } }).outputText;
  const resolve = createRequire(file).resolve;
  const deps: string[] = [];
  const body = text.replace(/\brequire\((["'])(\.\.?\/[^"']+)\1\)/g, (_, _q: string, spec: string) => {
    const dep = packageFileId(name, root, resolve(spec));
    deps.push(dep);
    return `__load(${JSON.stringify(dep)})`;
  });
  return { body, deps };
}

/** The runtime: a module table and a loader that runs each module once, as Node's require does. */
const RUNTIME = `
  const loaded = new Map();
  function __load(id) {
    const hit = loaded.get(id);
    if (hit) return hit.exports;
    const define = modules[id];
    if (!define) throw new Error('blockemu bundle: no module ' + id);
    const module = { exports: {} };
    loaded.set(id, module);
    define.call(undefined, module.exports, externalRequire, module);
    return module.exports;
  }
  function __metaOf(id) {
    const { dirname, join } = externalRequire('node:path');
    const file = join(dist, id);
    return { url: externalRequire('node:url').pathToFileURL(file).href, dirname: dirname(file) };
  }
  return __load;
`;

/**
 * The few non-ASCII characters (in messages) as \\u escapes: the launcher
 * reads an ASCII file as latin1, a plain copy into a one-byte string,
 * instead of decoding UTF-8. Comments are gone, so every such character
 * is in a string, template or regular expression, where the escape means
 * the same (the one String.raw, lock-helper's perl script, is ASCII).
 */
function asciiOnly(text: string): string {
  return text.replace(/[^\x00-\x7f]/gu, (ch) => {
    if (ch.length > 1) throw new Error(`bundle: a character outside the BMP (${ch}) needs a surrogate-pair escape`);
    return `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

export async function writeBundle(): Promise<{ modules: number; bytes: number }> {
  const bodies = new Map<string, string>();
  const queue = [...ENTRIES];
  while (queue.length) {
    const id = queue.shift()!;
    if (bodies.has(id)) continue;
    const { body, deps } = id.startsWith('pkg:') ? await packageModule(id) : await transpile(id);
    bodies.set(id, body);
    queue.push(...deps.filter((d) => !bodies.has(d)));
  }
  const table = [...bodies].map(([id, body]) => `${JSON.stringify(id)}: function (exports, require, module) {\n${body}\n}`);
  const text = asciiOnly(`(function (externalRequire, dist) {\n'use strict';\nconst modules = {\n${table.join(',\n')}\n};\n${RUNTIME}\n})\n`);
  await rm(CODE_CACHE, { force: true });
  await writeFile(BUNDLE, text);
  return { modules: bodies.size, bytes: text.length };
}

/** Starts a daemon from the bundle, answers its greeting and quits: the process writes the code cache of all that on exit. */
export async function warmCodeCache(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'blockemu-build-'));
  try {
    const sock = join(dir, 'qmp.sock');
    const bin = join(DIST, 'bin', 'blockemu.js');
    const args = [bin, 'daemon', '--blockdev', 'null-co,node-name=n0', '--chardev', `socket,id=m,path=${sock},server=on,wait=off`, '--monitor', 'chardev=m'];
    const child = spawn(process.execPath, args, { env: { ...process.env, [WRITE_CACHE_ENV]: '1' }, stdio: ['ignore', 'ignore', 'inherit'] });
    const exited = new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', resolve);
    });
    const early = exited.then((code) => Promise.reject(new Error(`the warm-up daemon exited with ${code} before its monitor answered`)));
    early.catch(() => undefined); // once the session is done, its exit is awaited below
    await Promise.race([session(sock, ['{"execute":"qmp_capabilities"}', '{"execute":"query-named-block-nodes"}', '{"execute":"quit"}']), early]);
    const code = await exited;
    if (code !== 0) throw new Error(`the warm-up daemon exited with ${code}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Connects once the socket is there and sends each command after the previous line came back. */
async function session(path: string, commands: string[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve, reject) => {
      const sock = connect(path);
      sock.once('error', () => resolve(false));
      sock.once('connect', () => {
        let buf = '';
        let next = 0;
        sock.setEncoding('utf8');
        sock.on('data', (d: string) => {
          buf += d;
          for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
            buf = buf.slice(nl + 1);
            if (next < commands.length) sock.write(`${commands[next++]}\n`);
          }
        });
        sock.once('close', () => (next === commands.length ? resolve(true) : reject(new Error('the warm-up daemon closed its monitor early'))));
      });
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error('the warm-up daemon did not open its monitor');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const { modules, bytes } = await writeBundle();
await warmCodeCache();
process.stdout.write(`bundle: ${modules} modules, ${(bytes / 1024).toFixed(0)} KiB, code cache written\n`);

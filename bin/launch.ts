import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { Script } from 'node:vm';

/**
 * What both executables do first. The compiled CLI is ~400 ES modules;
 * Node 20 reads, resolves and compiles each one apart (an async file read
 * per module), which was most of a daemon's start-up. `npm run build`
 * also packs them into one CommonJS file (build/bundle.ts) with V8's code
 * cache of a warmed-up start beside it; the executables load that, and
 * the modules themselves only when there is no bundle (a build by `tsc`
 * alone). Library users import the modules as before.
 */

const DIST = join(import.meta.dirname, '..');
export const BUNDLE = join(DIST, 'blockemu.bundle.cjs');
export const CODE_CACHE = join(DIST, 'blockemu.bundle.cache');
/** Set by the build: the process writes the code cache of what it compiled when it exits. */
export const WRITE_CACHE_ENV = 'BLOCKEMU_WRITE_CODE_CACHE';
/** `off`: run the ES modules (stack traces with source maps); `report`: say on stderr whether V8 took the code cache. */
export const BUNDLE_ENV = 'BLOCKEMU_BUNDLE';

type Loader = (id: string) => unknown;

function bundleLoader(): Loader | undefined {
  const mode = process.env[BUNDLE_ENV];
  if (mode === 'off') return undefined;
  let source: string;
  try {
    source = readFileSync(BUNDLE, 'latin1'); // ASCII only (build/bundle.ts): no UTF-8 decoding
  } catch {
    return undefined;
  }
  let cachedData: Buffer | undefined;
  try {
    cachedData = readFileSync(CODE_CACHE);
  } catch {
    // No cache: V8 compiles the source (a stale or foreign cache is rejected by V8 the same way).
  }
  const script = new Script(source, { filename: BUNDLE, cachedData });
  if (mode === 'report') process.stderr.write(`blockemu bundle: code cache ${cachedData === undefined ? 'absent' : script.cachedDataRejected ? 'rejected' : 'used'}\n`);
  if (process.env[WRITE_CACHE_ENV] === '1') process.once('exit', () => writeFileSync(CODE_CACHE, script.createCachedData()));
  const factory = script.runInThisContext() as (externalRequire: NodeJS.Require, dist: string) => Loader;
  return factory(createRequire(BUNDLE), DIST);
}

/** Process-wide set-up, then the entry module (`bin/<entry>.js`) from the bundle or, failing that, as an ES module. */
export async function loadEntry<T>(entry: 'cli' | 'system-cli'): Promise<T> {
  // No inlining in V8's optimising compiler. A daemon's hot path is a deep
  // stack of small async functions (job, copier, node, driver, image, file);
  // inlining them into each other makes every optimised compile large (20-40 ms
  // each, 0.9 s of compiler threads in a fresh daemon's first 1 GiB backup,
  // competing on a small machine with the I/O threads) for no gain once warm
  // (measured: the same CPU per warm backup, a third less per cold one).
  // Set before the bundle is compiled: V8 rejects a code cache made under other flags.
  setFlagsFromString('--no-turbo-inlining');
  // A reader that went away (`blockemu … | head`) ends the output, not the process with a stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
  const load = bundleLoader();
  if (load) return load(`bin/${entry}.js`) as T;
  return (await import(`./${entry}.js`)) as T;
}

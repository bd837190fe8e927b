/**
 * QEMU 7.2's iotests and the python package they import, from Debian's
 * source package: what `npm run iotests` runs. Looked for in $QEMU_SRC, then
 * in the cache directory; fetched there (apt-get source with a private apt
 * configuration, so nothing on the machine changes) when `fetch` is set.
 */
import { spawn } from 'node:child_process';
import { access, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { applyDebianPatches } from './debian-patches.js';

/** Written into a fetched tree once Debian's patches are in it; a cached tree without it is fetched again. */
const PATCHED_MARK = '.blockemu-debian-patches';

/** The tree holds tests/qemu-iotests/check and python/qemu (and, for a fetched tree, Debian's patches). */
async function isTree(dir: string, fetched = false): Promise<boolean> {
  try {
    await access(join(dir, 'tests', 'qemu-iotests', 'check'));
    await access(join(dir, 'python', 'qemu'));
    if (fetched) await access(join(dir, PATCHED_MARK));
    return true;
  } catch {
    return false;
  }
}

export function cacheDir(): string {
  return process.env.BLOCKEMU_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'blockemu');
}

function run(cmd: string, args: string[], cwd?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} failed (${code}): ${err.trim().slice(-2000)}`))));
  });
}

/**
 * deb-src entries for the suites the machine's own apt sources name
 * (deb822 files under sources.list.d, or one-line sources.list).
 */
async function debSrcEntries(): Promise<string> {
  const out: string[] = [];
  const dir = '/etc/apt/sources.list.d';
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    if (!f.endsWith('.sources')) continue;
    const text = await readFile(join(dir, f), 'utf8');
    out.push(text.replace(/^Types:.*$/gm, 'Types: deb-src'));
  }
  const list = await readFile('/etc/apt/sources.list', 'utf8').catch(() => '');
  const lines = list.split('\n').filter((l) => /^deb\s/.test(l)).map((l) => l.replace(/^deb\s/, 'deb-src '));
  if (lines.length > 0) out.push(lines.join('\n'));
  if (out.length === 0) throw new Error('no apt sources found to derive deb-src entries from');
  return out.join('\n\n') + '\n';
}

/** Downloads Debian's qemu source package into `dir` and unpacks the iotests and python trees. */
async function fetchInto(dir: string): Promise<string> {
  const apt = join(dir, 'apt');
  for (const f of await readdir(dir)) if (f.startsWith('qemu') || f === 'debian-tree') await rm(join(dir, f), { recursive: true, force: true });
  await rm(apt, { recursive: true, force: true });
  for (const d of ['sources.list.d', 'lists/partial', 'cache/archives/partial']) await mkdir(join(apt, d), { recursive: true });
  const src = (await debSrcEntries()).includes('Types:') ? 'deb-src.sources' : 'deb-src.list';
  await writeFile(join(apt, 'sources.list.d', src), await debSrcEntries());
  const opts = [
    '-o', 'Dir::Etc::SourceList=/dev/null',
    '-o', `Dir::Etc::SourceParts=${join(apt, 'sources.list.d')}`,
    '-o', `Dir::State::Lists=${join(apt, 'lists')}`,
    '-o', `Dir::Cache=${join(apt, 'cache')}`,
    '-o', 'Debug::NoLocking=1',
  ];
  await run('apt-get', [...opts, '-qq', 'update']);
  await run('apt-get', [...opts, '-qq', 'source', '--download-only', 'qemu'], dir);
  const orig = (await readdir(dir)).find((f) => /^qemu_7\.2\+dfsg\.orig\.tar\.xz$/.test(f));
  if (!orig) throw new Error(`apt-get source did not give qemu 7.2's orig tarball in ${dir}`);
  await run('tar', ['-xJf', orig, '--wildcards', 'qemu-7.2*/tests/qemu-iotests', 'qemu-7.2*/python'], dir);
  const top = (await readdir(dir)).find((f) => /^qemu-7\.2/.test(f));
  if (!top || !(await isTree(join(dir, top)))) throw new Error(`the unpacked tarball in ${dir} has no tests/qemu-iotests`);
  // The stable releases' patches, as the installed binaries carry them (see debian-patches.ts).
  const debianTar = (await readdir(dir)).find((f) => /^qemu_7\.2\+dfsg-.*\.debian\.tar\.xz$/.test(f));
  if (!debianTar) throw new Error(`apt-get source did not give the debian tarball in ${dir}`);
  const debianDir = join(dir, 'debian-tree');
  await rm(debianDir, { recursive: true, force: true });
  await mkdir(debianDir);
  await run('tar', ['-xJf', join(dir, debianTar), 'debian/patches'], debianDir);
  const applied = await applyDebianPatches(join(dir, top), debianDir);
  await writeFile(join(dir, top, PATCHED_MARK), `${debianTar}\n${applied.join('\n')}\n`);
  await rm(debianDir, { recursive: true, force: true });
  return join(dir, top);
}

/** The source tree's directory, or why there is none. */
export async function findQemuSource(fetch: boolean): Promise<{ dir: string } | { missing: string }> {
  if (process.env.QEMU_SRC) {
    return (await isTree(process.env.QEMU_SRC)) ? { dir: process.env.QEMU_SRC } : { missing: `QEMU_SRC=${process.env.QEMU_SRC} has no tests/qemu-iotests/check` };
  }
  const cache = join(cacheDir(), 'qemu-src');
  for (const f of await readdir(cache).catch(() => [] as string[])) {
    if (/^qemu-7\.2/.test(f) && (await isTree(join(cache, f), true))) return { dir: join(cache, f) };
  }
  if (!fetch) return { missing: `no QEMU 7.2 source: set QEMU_SRC or run \`npm run iotests -- --fetch\` (fetches Debian's source package into ${cache})` };
  await mkdir(cache, { recursive: true });
  // Once more on failure: a download cut short once left a tarball tar could not read.
  return { dir: await fetchInto(cache).catch(() => fetchInto(cache)) };
}

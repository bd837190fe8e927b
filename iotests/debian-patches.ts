/**
 * Debian's qemu 7.2 is QEMU 7.2.0 plus the upstream stable releases, carried as
 * patches (debian/patches/v7.2.N.diff). The installed binaries behave as 7.2.N
 * does (7.2.9 changed the order of quit's reply and SHUTDOWN, for one), and the
 * stable releases updated the iotests' reference outputs to match; so the
 * iotests tree must carry the same patches as the binaries it is checked against.
 */
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** The trees `npm run iotests` unpacks from the orig tarball: only their parts of a patch apply. */
export const IOTESTS_TREES = ['tests/qemu-iotests/', 'python/'];

/** Patch names in a quilt series file, in order (comments, blank lines and per-patch options dropped). */
export function seriesEntries(series: string): string[] {
  return series
    .split('\n')
    .map((l) => l.replace(/#.*$/, '').trim())
    .filter((l) => l !== '')
    .map((l) => l.split(/\s+/)[0]!);
}

/** The path a file section changes, from its `+++ b/…` line (or `--- a/…` when the file is deleted). */
function sectionPath(lines: string[]): string | undefined {
  const plus = lines.find((l) => l.startsWith('+++ '));
  const minus = lines.find((l) => l.startsWith('--- '));
  const pick = (l: string | undefined): string | undefined => {
    const p = l?.slice(4).split('\t')[0]!.trim();
    return p === undefined || p === '/dev/null' ? undefined : p.replace(/^[ab]\//, '');
  };
  const git = lines[0]!.match(/^diff --git a\/(\S+) b\/(\S+)$/);
  return pick(plus) ?? pick(minus) ?? git?.[2];
}

/**
 * The sections of a unified diff (git-style or plain) that change files under one of `trees`,
 * joined back into one diff. Sections are cut at `diff --git` lines, or at a `--- ` line that a
 * `+++ ` line follows when the diff has no git headers; text before the first section is dropped.
 */
export function filterDiff(diff: string, trees: readonly string[]): string {
  const lines = diff.split('\n');
  const starts: number[] = [];
  const gitStyle = lines.some((l) => l.startsWith('diff --git '));
  for (let i = 0; i < lines.length; i++) {
    if (gitStyle ? lines[i]!.startsWith('diff --git ') : lines[i]!.startsWith('--- ') && lines[i + 1]?.startsWith('+++ ')) starts.push(i);
  }
  const kept: string[] = [];
  for (let s = 0; s < starts.length; s++) {
    // A plain section's hunk lines never start with "--- " followed by "+++ ", so the cut is safe;
    // a git section ends where the next begins.
    const section = lines.slice(starts[s], starts[s + 1] ?? lines.length);
    const path = sectionPath(section);
    if (path !== undefined && trees.some((t) => path.startsWith(t))) kept.push(section.join('\n'));
  }
  const out = kept.join('\n');
  return out === '' || out.endsWith('\n') ? out : out + '\n';
}

function gitApply(cwd: string, patchFile: string): Promise<void> {
  return new Promise((resolve, reject) => {
    // The ceiling keeps git from taking an enclosing repository's root as the base of the patch's paths.
    const env = { ...process.env, GIT_CEILING_DIRECTORIES: dirname(cwd) };
    const p = spawn('git', ['apply', '-p1', '--whitespace=nowarn', patchFile], { cwd, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`git apply ${patchFile} failed (${code}): ${err.trim().slice(-2000)}`))));
  });
}

/**
 * Applies, in series order, the parts of `debian/patches/*` (unpacked under `debianDir`) that touch the
 * iotests trees, to the tree at `top`. Returns the names of the patches that changed something.
 */
export async function applyDebianPatches(top: string, debianDir: string): Promise<string[]> {
  const patches = join(debianDir, 'debian', 'patches');
  const applied: string[] = [];
  for (const name of seriesEntries(await readFile(join(patches, 'series'), 'utf8'))) {
    const part = filterDiff(await readFile(join(patches, name), 'utf8'), IOTESTS_TREES);
    if (part === '') continue;
    const file = join(debianDir, `${name.replace(/[^\w.-]/g, '_')}.iotests.diff`);
    await writeFile(file, part);
    await gitApply(top, file);
    applied.push(name);
  }
  return applied;
}

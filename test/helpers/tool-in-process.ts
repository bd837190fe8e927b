/**
 * `blockemu img` and `blockemu io` command lines run inside the test worker,
 * through the same entry point as the executable (bin/cli.ts main) with
 * buffers for stdout and stderr. The interop tests run thousands of them, and
 * a Node start (about 0.2 s of CPU here) per line was most of the suite's
 * time. What only a process shows stays spawned: test/cli and test/build
 * run the executables, and BLOCKEMU_TEST_SPAWN=1 spawns every line as before.
 *
 * One line runs at a time per worker (a line may chdir and set the
 * environment, as its process would have its own), and a line that leaves
 * a file below the temp directory open fails: a process's exit would have
 * closed it, and an embedding program's daemon would keep it.
 */
import { readdir, readlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { main } from '../../bin/cli.js';
import type { RunResult } from './qemu.js';

export const SPAWN_TOOLS = process.env.BLOCKEMU_TEST_SPAWN === '1';

/** Whether a tool line can run in-process: io's sigraise and abort end their process, as they must. */
export function runsInProcess(tool: string | undefined, args: readonly string[]): boolean {
  if (SPAWN_TOOLS || (tool !== 'img' && tool !== 'io')) return false;
  return !args.some((a) => /\b(?:sigraise|abort)\b/.test(a));
}

let queue: Promise<void> = Promise.resolve();

/** Runs `blockemu <args>` (args[0] is img or io) in this process; never throws on a non-zero exit. */
export async function runToolInProcess(args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  const turn = queue;
  let done!: () => void;
  queue = new Promise((resolve) => (done = resolve));
  await turn;
  const cwd = process.cwd();
  const env = { ...process.env };
  try {
    if (opts.cwd !== undefined) process.chdir(opts.cwd);
    if (opts.env !== undefined) setEnv(opts.env);
    const before = await openTempFiles();
    let stdout = '';
    let stderr = '';
    const code = await main([process.execPath, 'blockemu', ...args], { out: (t) => (stdout += t), err: (t) => (stderr += t) });
    const left = [...(await openTempFiles())].filter((f) => !before.has(f));
    if (left.length > 0) throw new Error(`blockemu ${args.join(' ')} left files open: ${left.join(', ')}`);
    return { stdout, stderr, code: code ?? 0 };
  } finally {
    process.chdir(cwd);
    setEnv(env);
    done();
  }
}

function setEnv(env: NodeJS.ProcessEnv): void {
  for (const k of Object.keys(process.env)) if (!(k in env)) delete process.env[k];
  for (const [k, v] of Object.entries(env)) if (v !== undefined) process.env[k] = v;
}

/** The files below the temp directory this process has open (fd targets). */
async function openTempFiles(): Promise<Set<string>> {
  const tmp = tmpdir();
  const found = new Set<string>();
  for (const fd of await readdir('/proc/self/fd').catch(() => [] as string[])) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => undefined);
    if (target?.startsWith(`${tmp}/`)) found.add(`${fd} → ${target}`);
  }
  return found;
}

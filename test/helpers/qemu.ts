import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { spawnSync } from 'node:child_process';
import { runsInProcess, runToolInProcess } from './tool-in-process.js';

const execFileP = promisify(execFile);

function has(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Whether QEMU's tools can be used. Interop tests call `describe.skipIf(!qemu.available)`;
 * under CI=true a missing tool is a failure, not a skip (see the README).
 */
export const qemu = (() => {
  const tools = ['qemu-img', 'qemu-io'];
  const missing = tools.filter((t) => !has(t));
  if (missing.length > 0) {
    const msg = `QEMU's tools are missing (${missing.join(', ')}): install qemu-utils to run the interop tests`;
    if (process.env.CI === 'true') throw new Error(`${msg} — CI=true, so this is a failure, not a skip`);
    console.warn(`SKIP: ${msg}`);
  }
  const storageDaemon = has('qemu-storage-daemon');
  if (!storageDaemon) {
    const msg = "qemu-storage-daemon is missing: install qemu-system-common to run the QMP conformance tests";
    if (process.env.CI === 'true') throw new Error(`${msg} — CI=true, so this is a failure, not a skip`);
    console.warn(`SKIP: ${msg}`);
  }
  return { available: missing.length === 0, storageDaemon };
})();

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs a command, never throwing on a non-zero exit. */
export async function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  try {
    const { stdout, stderr } = await execFileP(cmd, args, { cwd: opts.cwd, env: opts.env, maxBuffer: 64 << 20, encoding: 'utf8' });
    return { stdout, stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number | string };
    return { stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: typeof e.code === 'number' ? e.code : 1 };
  }
}

export const qemuImg = (...args: string[]) => run('qemu-img', args);
export const qemuIo = (...args: string[]) => run('qemu-io', args);

/** The built CLI (npm test builds first). */
export const BLOCKEMU = join(import.meta.dirname, '..', '..', 'dist', 'bin', 'blockemu.js');
export const blockemu = (...args: string[]) => run(process.execPath, [BLOCKEMU, ...args]);

/**
 * `blockemu img …` / `blockemu io …` for comparisons with QEMU's tools: in
 * this process where it can be (./tool-in-process.ts), else spawned.
 */
export async function runBlockemu(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  if (runsInProcess(args[0], args.slice(1))) return runToolInProcess(args, opts);
  return run(process.execPath, [BLOCKEMU, ...args], opts);
}

/** A temp directory removed after use. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'blockemu-test-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** qemu-io's timing lines, which differ run to run. */
export const QEMU_IO_TIMING = /^(.*, \d+ ops; )(?:\d\d\.\d\d sec|\d+:\d\d:\d\d\.\d\d) \(\S+ \S+\/sec and \S+ ops\/sec\)$/gm;

/** A qemu-io or `blockemu io` run with its timing lines and program name made alike, for comparing the two. */
export function normaliseQemuIo(r: RunResult): RunResult {
  return {
    stdout: r.stdout.replace(QEMU_IO_TIMING, '$1<time>').replaceAll('blockemu io', 'qemu-io'),
    stderr: r.stderr.replaceAll('blockemu io', 'qemu-io'),
    code: r.code,
  };
}

/**
 * Shared by the `blockemu img` interop tests: run the same command line
 * through `blockemu img` and through qemu-img 7.2 (the oracle) and compare.
 *
 * The one normalisation: blockemu reports errors with qemu-img's wording under
 * its own program name — "blockemu img: Could not open 'x': …" where qemu-img
 * prints "qemu-img: Could not open 'x': …", and "Try 'blockemu img --help' …"
 * for "Try 'qemu-img --help' …". So "blockemu img" becomes "qemu-img" in
 * stderr before comparing. Nothing else is rewritten: stdout (including the
 * "\r"-redrawn progress lines, which depend on no clock), stderr and the
 * exit code must match byte for byte.
 */
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { run, type RunResult, runBlockemu } from '../helpers/qemu.js';

export const blockemuImg = (args: string[], cwd?: string) => runBlockemu(['img', ...args], { cwd });
export const qemuImgIn = (args: string[], cwd?: string) => run('qemu-img', args, { cwd });

export function normalise(r: RunResult): RunResult {
  return { ...r, stderr: r.stderr.replaceAll('blockemu img', 'qemu-img') };
}

/** Runs `args` with both tools (optionally each in its own directory) and expects identical results. */
export async function expectSame(args: string[], cwd: string | { b: string; q: string }): Promise<{ b: RunResult; q: RunResult }> {
  const cb = typeof cwd === 'string' ? cwd : cwd.b;
  const cq = typeof cwd === 'string' ? cwd : cwd.q;
  const b = await blockemuImg(args, cb);
  const q = await qemuImgIn(args, cq);
  expect({ args, ...normalise(b) }).toEqual({ args, ...q });
  return { b, q };
}

/** Runs a QEMU tool that must succeed (fixture building). */
export async function must(tool: 'qemu-img' | 'qemu-io', args: string[], cwd: string): Promise<string> {
  const r = await run(tool, args, { cwd });
  if (r.code !== 0) throw new Error(`${tool} ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/**
 * A scratch directory with `b/` and `q/` below it: commands that write files
 * run in b/ for blockemu and q/ for qemu-img, so both see the same relative
 * names (messages quote them) and inputs are reached as "../name".
 */
export async function scratch(): Promise<{ dir: string; b: string; q: string; done: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'blockemu-img-'));
  await mkdir(join(dir, 'b'));
  await mkdir(join(dir, 'q'));
  return { dir, b: join(dir, 'b'), q: join(dir, 'q'), done: () => rm(dir, { recursive: true, force: true }) };
}

/** Bytes a file occupies on disk (what makes a target sparse or not). */
export async function allocated(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

const QEMU_TOOL = { img: 'qemu-img', io: 'qemu-io' } as const;

/**
 * QEMU times PBKDF2 in thread CPU time for a LUKS key and now and then
 * cannot ("Unable to get accurate CPU usage"), failing before it changes
 * anything: such a run is no answer, and QEMU is asked again.
 */
async function runQemuTool(tool: 'img' | 'io', args: string[], cwd: string): Promise<RunResult> {
  for (let attempt = 0; ; attempt++) {
    const q = await run(QEMU_TOOL[tool], args, { cwd });
    if (attempt === 5 || !q.stderr.includes('Unable to get accurate CPU usage')) return q;
  }
}

/**
 * One command through `blockemu img|io` and the QEMU tool, each in its own
 * directory (scratch()'s b/ and q/), expecting equal results, program names
 * aside: for sequences of commands that change their images.
 */
export async function expectSameIn(tool: 'img' | 'io', args: string[], dirs: { b: string; q: string }): Promise<RunResult> {
  const b = await runBlockemu([tool, ...args], { cwd: dirs.b });
  const q = await runQemuTool(tool, args, dirs.q);
  const norm = (r: RunResult) => ({ ...r, stderr: r.stderr.replaceAll('blockemu img', 'qemu-img').replaceAll('blockemu io', 'qemu-io') });
  expect({ tool, args, ...norm(b) }).toEqual({ tool, args, ...q });
  return b;
}

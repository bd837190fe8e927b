import { type ChildProcess, spawn } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ImageLockError } from '../../src/image/file-lock.js';
import { BLOCKEMU, run } from './qemu.js';

/**
 * Helpers for the image-lock tests: which bytes of a file are locked (from
 * /proc/locks, by anyone), QEMU processes that hold an image open, and what
 * qemu-io says when it tries to open one.
 */

/**
 * The locked bytes of `path`, sorted, one entry per holder and byte (two
 * holders of byte 100 give 100 twice). /proc/locks names the file by device
 * and inode and merges a holder's adjacent bytes into one range
 * ("1: OFDLCK ADVISORY  READ -1 fe:00:2146361 100 101").
 */
export async function lockedBytes(path: string): Promise<number[]> {
  const st = await stat(path, { bigint: true });
  // glibc's gnu_dev_major / gnu_dev_minor; /proc/locks prints them in hex.
  const major = ((st.dev >> 8n) & 0xfffn) | ((st.dev >> 32n) & ~0xfffn);
  const minor = (st.dev & 0xffn) | ((st.dev >> 12n) & ~0xffn);
  const id = `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}:${st.ino}`;
  // /proc/locks lists every lock on the machine and comes a page per read(): when
  // other processes (parallel tests) lock or unlock between two reads, lines
  // shift and one is seen twice or not at all. Read until three reads in a row agree.
  let last = '';
  let same = 0;
  for (let tries = 0; ; tries++) {
    const bytes = bytesOf(await readFile('/proc/locks', 'utf8'), id);
    const key = bytes.join(',');
    same = key === last ? same + 1 : 0;
    if (same === 2 || tries === 30) return bytes;
    last = key;
  }
}

function bytesOf(table: string, id: string): number[] {
  const bytes: number[] = [];
  for (const line of table.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[1] === '->' || f[5] !== id) continue; // "->" marks a waiter, not a holder
    for (let b = Number(f[6]); b <= Number(f[7]); b++) bytes.push(b);
  }
  return bytes.sort((a, b) => a - b);
}

/** A QEMU process holding an image open until `stop`. */
export interface Holder {
  stop(): Promise<void>;
}

function exited(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => (p.exitCode !== null || p.signalCode !== null ? resolve() : p.once('exit', () => resolve())));
}

/**
 * `qemu-io ARGS FILE` reading commands from a pipe: it has the image open
 * (and its locks taken) once it answers `length`; `quit` lets it go.
 */
export function holdWithQemuIo(args: string[], file: string, cwd?: string): Promise<Holder> {
  return holdWithIo('qemu-io', args, file, cwd);
}

/** The same with `blockemu io ARGS FILE` (its interactive mode: commands on stdin). */
export function holdWithBlockemuIo(args: string[], file: string, cwd?: string): Promise<Holder> {
  return holdWithIo(process.execPath, [BLOCKEMU, 'io', ...args], file, cwd);
}

async function holdWithIo(cmd: string, args: string[], file: string, cwd: string | undefined): Promise<Holder> {
  const p = spawn(cmd, [...args, file], { stdio: ['pipe', 'pipe', 'pipe'], cwd });
  let out = '';
  let err = '';
  p.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  p.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  p.stdin!.write('length\n');
  for (const t0 = Date.now(); !out.includes('\n'); await sleep(5)) {
    if (p.exitCode !== null) throw new Error(`${cmd} ${args.join(' ')} could not hold ${file}: ${err}`);
    if (Date.now() - t0 > 10_000) throw new Error(`${cmd} ${args.join(' ')} did not answer`);
  }
  return {
    async stop() {
      p.stdin!.end('quit\n');
      await exited(p);
    },
  };
}

/** qemu-storage-daemon with these --blockdev values; it has the image open once its locks show (it must take some). */
export async function holdWithQsd(blockdevs: string[], file: string): Promise<Holder> {
  const p = spawn('qemu-storage-daemon', blockdevs.flatMap((b) => ['--blockdev', b]), { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  for (const t0 = Date.now(); (await lockedBytes(file)).length === 0; await sleep(10)) {
    if (p.exitCode !== null) throw new Error(`qemu-storage-daemon could not hold ${file}: ${err}`);
    if (Date.now() - t0 > 10_000) throw new Error('qemu-storage-daemon took no locks');
  }
  return {
    async stop() {
      p.kill('SIGTERM');
      await exited(p);
    },
  };
}

/** What opening an image said: 'ok', or the error and its hint as QEMU prints them. */
export interface Outcome {
  message: string;
  hint?: string;
}

/** `qemu-io ARGS -c 'read 0 512' FILE`, its refusal split as it prints it: "qemu-io: can't open device FILE: MESSAGE\nHINT\n". */
export async function qemuIoOpens(args: string[], file: string): Promise<Outcome> {
  const r = await run('qemu-io', [...args, '-c', 'read 0 512', file]);
  if (r.code === 0) return { message: 'ok' };
  const name = file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^qemu-io: can't open device ${name}: (.*)\\n(?:(.*)\\n)?$`).exec(r.stderr);
  if (!m) return { message: `unexpected: exit ${r.code}, ${JSON.stringify(r.stderr)}` };
  return m[2] === undefined ? { message: m[1]! } : { message: m[1]!, hint: m[2] };
}

/** How a blockemu call ended: 'ok', or its error's message and the lock hint (from the error or one of its causes). */
export async function refusal(p: Promise<unknown>): Promise<Outcome> {
  try {
    await p;
  } catch (err) {
    for (let e: unknown = err; e instanceof Error; e = e.cause) {
      if (e instanceof ImageLockError && e.hint !== undefined) return { message: (err as Error).message, hint: e.hint };
    }
    return { message: (err as Error).message };
  }
  return { message: 'ok' };
}

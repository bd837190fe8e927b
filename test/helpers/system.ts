/**
 * Runs qemu-system-x86_64 or `blockemu system` on the same command line
 * the way QEMU's Python harness does: the test listens on a Unix socket and
 * the program connects to it (`-chardev socket,id=mon,path=… -mon
 * chardev=mon,mode=control`). A session is a transcript: every line the
 * monitor wrote, in order, event timestamps removed, up to the end of the
 * connection, with the exit code.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { BLOCKEMU, QEMU_IO_TIMING } from './qemu.js';

export type SystemProg = 'qemu' | 'blockemu';

/** Whether qemu-system-x86_64 (the oracle) is installed; missing is a failure under CI=true. */
export const qemuSystem = (() => {
  const ok = spawnSync('sh', ['-c', 'command -v qemu-system-x86_64'], { stdio: 'ignore' }).status === 0;
  if (!ok) {
    const msg = 'qemu-system-x86_64 is missing: install qemu-system-x86 to compare blockemu system with it';
    if (process.env.CI === 'true') throw new Error(`${msg} — CI=true, so this is a failure, not a skip`);
    console.warn(`SKIP: ${msg}`);
  }
  return { available: ok };
})();

/** blockemu prints QEMU's program name (BLOCKEMU_TOOL_NAMES=qemu), so stderr compares as text. */
export function spawnSystem(prog: SystemProg, args: readonly string[], stdio: 'pipe' | 'ignore' | Array<'pipe' | 'ignore'> = 'pipe'): ChildProcess {
  return prog === 'qemu'
    ? spawn('qemu-system-x86_64', args, { stdio })
    : spawn(process.execPath, [BLOCKEMU, 'system', ...args], { stdio, env: { ...process.env, BLOCKEMU_TOOL_NAMES: 'qemu' } });
}

/** What both programs need to start with no guest worth the name (Debian's QEMU has no qtest accelerator). */
export const BASE = ['-nodefaults', '-display', 'none', '-vga', 'none', '-accel', 'tcg'];

export interface Transcript {
  lines: string[];
  code: number | null;
  stderr: string;
  /** What the program printed on stdout (QEMU's printf: an image a command created is announced there). */
  stdout: string;
}

/** Normalises what legitimately differs: event timestamps and the greeting's version and package. */
export function normalise(line: string): string {
  return line
    .replace(/\{"timestamp": \{"seconds": \d+, "microseconds": \d+\}, /, '{')
    .replace(/"version": \{"qemu": \{"micro": \d+, "minor": 2, "major": 7\}, "package": "[^"]*"\}/, '"version": VERSION');
}

/**
 * Starts `prog` with `args` plus a client-mode monitor on a socket in
 * `dir`, sends each request after the reply to the one before, then reads
 * to the end of the connection (a last request of quit ends it). A request
 * `{"wait": "EVENT"}` waits for the next event of that name instead (the
 * first wait for the first such event of the transcript, and so on).
 */
export async function qmpTranscript(prog: SystemProg, dir: string, args: readonly string[], requests: readonly string[]): Promise<Transcript> {
  const path = join(dir, `${prog}-mon.sock`);
  const server = createServer();
  await new Promise<void>((r) => server.listen(path, r));
  const child = spawnSystem(prog, [...args, '-chardev', `socket,id=mon,path=${path}`, '-mon', 'chardev=mon,mode=control']);
  let stderr = '';
  let stdout = '';
  child.stderr!.on('data', (d) => (stderr += d));
  child.stdout!.on('data', (d) => (stdout += d));
  // 'close': the pipes are read to their end too.
  const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  try {
    const sock = await new Promise<Socket>((resolve, reject) => {
      server.once('connection', resolve);
      void exited.then((code) => reject(new Error(`${prog} exited (${code}) before connecting: ${stderr}`)));
    });
    server.close();
    const lines: string[] = [];
    let buf = '';
    let wake: (() => void) | undefined;
    let ended = false;
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        lines.push(normalise(buf.slice(0, nl).replace(/\r$/, '')));
        buf = buf.slice(nl + 1);
      }
      wake?.();
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      ended = true;
      wake?.();
    });
    const until = async (done: () => boolean) => {
      while (!done() && !ended) await new Promise<void>((r) => (wake = r));
    };
    const replies = () => lines.filter((l) => l.startsWith('{"return"') || l.startsWith('{"error"')).length;
    await until(() => lines.length > 0); // the greeting
    let sent = 0;
    const waited = new Map<string, number>();
    for (const req of requests) {
      // `{"wait": "EVENT"}` is not sent: it waits for one more event of that name (one that comes after a reply).
      const wait = /^\{"wait": "([A-Z_]+)"\}$/.exec(req)?.[1];
      if (wait !== undefined) {
        const n = (waited.get(wait) ?? 0) + 1;
        waited.set(wait, n);
        await until(() => lines.filter((l) => l.startsWith(`{"event": "${wait}"`)).length >= n);
        continue;
      }
      sock.write(`${req}\n`);
      sent++;
      await until(() => replies() >= sent);
    }
    await until(() => false);
    // HMP qemu-io's output goes to stdout: its timing lines differ run to run.
    return { lines, code: await exited, stderr, stdout: stdout.replace(QEMU_IO_TIMING, '$1<time>') };
  } finally {
    clearTimeout(killer);
    server.close();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** Runs `prog` to its exit (a probe, a refusal). */
export function runSystem(prog: SystemProg, args: readonly string[]): Promise<Transcript> {
  const child = spawnSystem(prog, args);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearTimeout(killer);
      resolve({ lines: [], stdout, stderr, code });
    }),
  );
}

/** What differs between the two in a raw QMP byte stream, compact or pretty: timestamps, the micro version and the package. */
export function normaliseBytes(out: string): string {
  return out.replace(/("(?:seconds|microseconds|micro)": )\d+/g, '$1N').replace(/("package": )"[^"]*"/g, '$1"PACKAGE"');
}

/**
 * Starts `prog` with `args` (which put a monitor on stdio), writes all the
 * requests at once (QEMU's monitor takes them one at a time, in order) and
 * returns every byte it wrote to stdout up to its exit, normalised.
 */
export async function stdioTranscript(prog: SystemProg, args: readonly string[], requests: readonly string[]): Promise<{ out: string; code: number | null }> {
  const child = spawnSystem(prog, args);
  let out = '';
  child.stdout!.setEncoding('latin1').on('data', (d: string) => (out += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  // stdin stays open: an end of input is not a quit, and quit is the last request.
  child.stdin!.write(requests.map((r) => `${r}\n`).join(''));
  const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
  clearTimeout(killer);
  return { out: normaliseBytes(out), code };
}

/**
 * Runs `prog` with a human monitor on stdio (`-monitor stdio` unless the
 * arguments say otherwise) and `input` piped to it, as iotests feed
 * qemu-system: the whole of stdout, byte for byte, with the greeting's
 * micro version (Debian's 7.2.N, blockemu's 7.2.0) made one.
 */
export function hmpTranscript(prog: SystemProg, args: readonly string[], input: string): Promise<Transcript & { stdout: string }> {
  const child = spawnSystem(prog, args);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('latin1');
  child.stdout!.on('data', (d: string) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  child.stdin!.on('error', () => undefined);
  child.stdin!.end(input);
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearTimeout(killer);
      resolve({ lines: [], stdout: stdout.replace(/^QEMU 7\.2\.\d+ monitor/, 'QEMU 7.2.N monitor'), stderr, code });
    }),
  );
}

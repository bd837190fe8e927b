/**
 * A daemon (qemu-storage-daemon or blockemu) started with the same command
 * line — block nodes, an optional `--nbd-server`, optional `--export`s and
 * one QMP monitor — for tests that compare what the two make of NBD
 * exports. Also: a failed start's exit code and stderr (the program name
 * normalised), and a raw NBD client that completes NBD_OPT_GO and stays
 * connected, to keep an export in use.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { QmpClient, type QmpEvent } from '../../src/qmp/client.js';
import { QmpError } from '../../src/qmp/error.js';
import type { Daemon } from './bitmap-daemon.js';
import { NBD, NbdWire, infoPayload } from './nbd-wire.js';
import { BLOCKEMU } from './qemu.js';

export type { Daemon };

/**
 * The daemon the tests hold up against qemu-storage-daemon. NBD_TEST_OURS=qsd
 * compares qsd with itself (proves a test's session is deterministic).
 */
export const OURS: Daemon = process.env['NBD_TEST_OURS'] === 'qsd' ? 'qsd' : 'blockemu';

export interface ExportDaemonOptions {
  /** Directory for the sockets, `qmp.sock` and `nbd.sock` (and what `${TMP}` stands for when normalising): one per daemon. */
  dir: string;
  /** `--blockdev` values (keyval or JSON), in order. */
  blockdevs?: string[];
  /** A `--nbd-server` value; `true`: a Unix socket at `nbdPath`. */
  nbdServer?: string | true;
  /** `--export` values, in order (after `--nbd-server`). */
  exports?: string[];
  /** Put the `--export`s before `--nbd-server` (QEMU takes the options in order). */
  exportsFirst?: boolean;
  /** Arguments in front of everything else (e.g. an `--export` before the `--blockdev` it names). */
  leadingArgs?: string[];
}

/** The same command line for both daemons (without the program). */
export function daemonArgs(o: ExportDaemonOptions, qmpPath: string, nbdPath: string): string[] {
  const args = [...(o.leadingArgs ?? [])];
  for (const b of o.blockdevs ?? []) args.push('--blockdev', b);
  const server = o.nbdServer === undefined ? [] : ['--nbd-server', o.nbdServer === true ? `addr.type=unix,addr.path=${nbdPath}` : o.nbdServer];
  const exports = (o.exports ?? []).flatMap((e) => ['--export', e]);
  args.push(...(o.exportsFirst ? [...exports, ...server] : [...server, ...exports]));
  args.push('--chardev', `socket,id=m,path=${qmpPath},server=on,wait=off`, '--monitor', 'chardev=m');
  return args;
}

/** The monitor's and the NBD server's socket in a daemon's directory. */
export const socketPaths = (dir: string) => ({ qmpPath: join(dir, 'qmp.sock'), nbdPath: join(dir, 'nbd.sock') });

/** Daemons still running; killed when the test process exits (a timed-out test leaves a hung qsd behind otherwise). */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

function spawnDaemon(which: Daemon, args: string[]): ChildProcess {
  const proc =
    which === 'qsd'
      ? spawn('qemu-storage-daemon', args, { stdio: ['ignore', 'ignore', 'pipe'] })
      : spawn(process.execPath, [BLOCKEMU, 'daemon', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  return proc;
}

export interface ExportDaemon {
  which: Daemon;
  client: QmpClient;
  proc: ChildProcess;
  dir: string;
  qmpPath: string;
  /** The Unix socket `nbdServer: true` listens on (tests may also use it with nbd-server-start). */
  nbdPath: string;
  stderr(): string;
  /** `quit`, then the events that came until the monitor closed (timestamps dropped); waits for the exit. */
  quit(): Promise<Array<{ event: string; data: unknown }>>;
}

/** Starts a daemon and connects its QMP monitor; throws (with its stderr) if it exits first. */
export async function startExportDaemon(which: Daemon, o: ExportDaemonOptions): Promise<ExportDaemon> {
  const { qmpPath, nbdPath } = socketPaths(o.dir);
  const proc = spawnDaemon(which, daemonArgs(o, qmpPath, nbdPath));
  let err = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => (err += d));
  let client: QmpClient | undefined;
  for (let i = 0; i < 400 && !client; i++) {
    if (proc.exitCode !== null) throw new Error(`${which} exited with ${proc.exitCode}: ${err}`);
    client = await QmpClient.connect(qmpPath).catch(async () => {
      await sleep(25);
      return undefined;
    });
  }
  if (!client) {
    proc.kill('SIGKILL');
    throw new Error(`${which}: no QMP socket (${err})`);
  }
  const c = client;
  const exited = new Promise<void>((r) => (proc.exitCode !== null || proc.signalCode !== null ? r() : proc.once('exit', () => r())));
  return {
    which,
    client: c,
    proc,
    dir: o.dir,
    qmpPath,
    nbdPath,
    stderr: () => err,
    async quit() {
      await c.execute('quit').catch(() => undefined);
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
      await c.close();
      return c.takeEvents().map(eventView);
    },
  };
}

/** An event without its timestamp. */
export const eventView = (e: QmpEvent): { event: string; data: unknown } => ({ event: e.event, data: e.data });

/** A QMP reply as the tests compare it: the return value, or the error's class and desc (the temp dir as `${TMP}`). */
export type Outcome = { return: unknown } | { error: { class: string; desc: string } };

export async function outcome(c: QmpClient, dir: string, cmd: string, args?: Record<string, unknown>): Promise<Outcome> {
  try {
    return { return: normalise(await c.execute(cmd, args), dir) };
  } catch (err) {
    if (!(err instanceof QmpError)) throw err;
    return { error: { class: err.qmpClass, desc: normalise(err.desc, dir) as string } };
  }
}

/**
 * Starts a daemon, plays QMP commands on it one after the other and quits:
 * the outcome of each (for sessions compared between the two daemons).
 */
export async function playQmp(which: Daemon, o: ExportDaemonOptions, steps: ReadonlyArray<[command: string, args?: Record<string, unknown>]>): Promise<Outcome[]> {
  const d = await startExportDaemon(which, o);
  const log: Outcome[] = [];
  try {
    for (const [cmd, args] of steps) log.push(await outcome(d.client, o.dir, cmd, args));
  } finally {
    await d.quit();
  }
  return log;
}

/** Replaces the temp dir with `${TMP}` and generated node names (`#block123`) with `#block`, everywhere in a JSON value. */
export function normalise(v: unknown, dir: string): unknown {
  if (v === undefined) return v;
  return JSON.parse(JSON.stringify(v).replaceAll(dir, '${TMP}').replace(/#block\d+/g, '#block'));
}

/** Takes events until `n` have come (or `timeoutMs` passed), then whatever else came within `settleMs`. */
export async function takeEvents(c: QmpClient, n: number, timeoutMs = 3000, settleMs = 30): Promise<Array<{ event: string; data: unknown }>> {
  const got: QmpEvent[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    got.push(...c.takeEvents());
    if (got.length >= n || Date.now() > deadline) break;
    await sleep(10);
  }
  if (settleMs > 0) {
    await sleep(settleMs);
    got.push(...c.takeEvents());
  }
  return got.map(eventView);
}

export interface FailedStart {
  code: number | string | null;
  /** stderr with the program name as `PROG` and the temp dir as `${TMP}`. */
  stderr: string;
}

/** Runs a daemon whose command line should make it fail; `timeout` if it is still running after `timeoutMs`. */
export async function failedStart(which: Daemon, o: ExportDaemonOptions, timeoutMs = 5000): Promise<FailedStart> {
  const { qmpPath, nbdPath } = socketPaths(o.dir);
  const proc = spawnDaemon(which, daemonArgs(o, qmpPath, nbdPath));
  let err = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => (err += d));
  let timedOut = false;
  const t = setTimeout(() => {
    timedOut = true;
    proc.kill('SIGKILL');
  }, timeoutMs);
  await new Promise<void>((r) => (proc.exitCode !== null ? r() : proc.once('close', () => r())));
  clearTimeout(t);
  return { code: timedOut ? 'timeout' : proc.exitCode, stderr: normaliseStderr(err, o.dir) };
}

/** `qemu-storage-daemon: ` and `blockemu daemon: ` at a line's start become `PROG: `. */
export function normaliseStderr(s: string, dir: string): string {
  return s.replaceAll(dir, '${TMP}').replace(/^(qemu-storage-daemon|blockemu daemon|blockemu): /gm, 'PROG: ');
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** `nbd+unix:///NAME?socket=PATH` */
export const nbdUri = (path: string, name: string): string => `nbd+unix:///${name}?socket=${path}`;

export interface NbdClient {
  /** The connection (none if the socket did not accept). */
  wire: NbdWire | undefined;
  /** How NBD_OPT_GO ended: acknowledged (and whether the export is read-only), or the error reply / how the session ended. */
  go: { ok: true; readOnly: boolean } | { ok: false; reply: unknown };
}

/**
 * An NBD client that negotiates (fixed newstyle, no zeroes) and sends
 * NBD_OPT_GO for `name`; once acknowledged it is in transmission and
 * counts as connected to the export until it closes.
 */
export async function nbdConnect(path: string, name: string): Promise<NbdClient> {
  let wire: NbdWire;
  try {
    wire = await NbdWire.connect(path, { waitMs: 500 });
  } catch {
    return { wire: undefined, go: { ok: false, reply: 'cannot connect' } };
  }
  await wire.greeting();
  wire.clientFlags(NBD.FLAG_C_FIXED_NEWSTYLE | NBD.FLAG_C_NO_ZEROES);
  wire.option(NBD.OPT_GO, infoPayload(name));
  await wire.optionReplies();
  const last = wire.transcript[wire.transcript.length - 1]!;
  if (last['step'] === 'option-reply' && last['type'] === 'ACK') {
    const exp = wire.transcript.find((r) => r['step'] === 'option-reply' && r['info'] === 'EXPORT');
    const flags = (exp?.['flagNames'] ?? []) as string[];
    return { wire, go: { ok: true, readOnly: flags.includes('READ_ONLY') } };
  }
  const { step, type, message } = last;
  return { wire, go: { ok: false, reply: JSON.parse(JSON.stringify({ step, type, message })) as unknown } };
}

/** One 512-byte READ at offset 0 on a connected client: `OK`, the error's name, or how the session ended. */
export async function nbdRead(cl: NbdClient): Promise<string> {
  if (!cl.wire) return 'not connected';
  cl.wire.request(NBD.CMD_READ, { offset: 0, length: 512 });
  await cl.wire.reply({ readLength: 512 });
  const last = cl.wire.transcript[cl.wire.transcript.length - 1]!;
  return last['step'] === 'simple-reply' ? String(last['error']) : String(last['step']);
}

/** Whether the server hangs up on the client within `timeoutMs`: `closed` or `still-open`. */
export async function nbdClosed(cl: NbdClient, timeoutMs = 3000): Promise<string> {
  if (!cl.wire) return 'not connected';
  await cl.wire.expectClosed(timeoutMs);
  return String(cl.wire.transcript[cl.wire.transcript.length - 1]!['step']);
}

/**
 * NBD exports over QMP against qemu-storage-daemon 7.2: the same sessions
 * on the same images through both daemons (started with the same command
 * line); replies (return values, error class and desc) and events (name
 * and data) must be identical, step by step. A session may also connect
 * raw NBD clients (up to NBD_OPT_GO) to keep an export in use, and the
 * command-line options --nbd-server / --export are compared by what a
 * session started with them shows, or by a failed start's exit code and
 * stderr. NBD_TEST_OURS=qsd compares qsd with itself.
 */
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type Daemon,
  type ExportDaemonOptions,
  failedStart,
  freePort,
  type NbdClient,
  nbdClosed,
  nbdConnect,
  nbdRead,
  normalise,
  OURS,
  outcome,
  startExportDaemon,
  takeEvents,
} from '../helpers/export-daemon.js';
import { qemu, qemuImg, qemuIo } from '../helpers/qemu.js';

type Args = Record<string, unknown>;
/**
 * A QMP command (with how many events it should bring; the log takes
 * those, waiting up to 3 s), or a client action: `connect` a raw NBD
 * client to an export name, `read` 512 bytes on it, wait until the server
 * has `closed` it, `hangup` (we close it), `exists` (a path, as a boolean),
 * `greet` (the first 18 bytes a TCP connection to ${PORT} gets), a node's
 * `bitmaps` (as query-named-block-nodes shows them).
 */
type Step =
  | [command: string, args?: Args, events?: number]
  | { connect: string; name: string }
  | { read: string }
  | { closed: string }
  | { hangup: string }
  | { exists: string }
  | { greet: true }
  | { bitmaps: string };
type Entry = Record<string, unknown>;

const dirs: string[] = [];
const servers: Server[] = [];
afterAll(async () => {
  for (const s of servers) s.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** disk: qcow2 (4 MiB, some data) on disk-file; ro: a read-only raw node (1 MiB) on ro-file; a regular file named stale.sock. */
async function images(dir: string): Promise<void> {
  await qemuImg('create', '-q', '-f', 'qcow2', join(dir, 'disk.qcow2'), '4M');
  await qemuIo('-f', 'qcow2', '-c', 'write -P 0x11 0 64k', '-c', 'write -P 0x22 1M 64k', join(dir, 'disk.qcow2'));
  await qemuImg('create', '-q', '-f', 'raw', join(dir, 'ro.raw'), '1M');
  await writeFile(join(dir, 'stale.sock'), 'not a socket');
}

const BLOCKDEVS = [
  'driver=file,node-name=disk-file,filename=${TMP}/disk.qcow2',
  'driver=qcow2,node-name=disk,file=disk-file',
  'driver=file,node-name=ro-file,filename=${TMP}/ro.raw,read-only=on',
  'driver=raw,node-name=ro,file=ro-file,read-only=on',
];

interface Vars {
  TMP: string;
  /** A free port on 127.0.0.1. */
  PORT: string;
  /** A port on 127.0.0.1 this test listens on. */
  BUSY: string;
}

function subst<T>(v: T, vars: Vars): T {
  if (v === undefined) return v;
  let s = JSON.stringify(v);
  for (const [k, x] of Object.entries(vars)) s = s.replaceAll(`\${${k}}`, x);
  return JSON.parse(s) as T;
}

async function busyPort(): Promise<number> {
  const s = createServer();
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return (s.address() as { port: number }).port;
}

/** The first 18 bytes a TCP client gets from 127.0.0.1:port (hex), or `refused`. */
async function greet(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 18) {
        s.destroy();
        resolve(got.subarray(0, 18).toString('hex'));
      }
    });
    s.on('error', () => resolve('refused'));
    s.on('close', () => resolve(got.length >= 18 ? got.subarray(0, 18).toString('hex') : `closed after ${got.length} bytes`));
  });
}

interface Session {
  /** Command line (values may use ${TMP}, ${PORT}); blockdevs default to BLOCKDEVS. */
  cli?: Omit<ExportDaemonOptions, 'dir'>;
  steps: Step[];
  /** Paths (may use ${TMP}) looked at once the daemon has quit: socket, file or absent. */
  existsAfterQuit?: string[];
}

/** Plays a session on one daemon; the log holds every step's result and the events, in order, ending with those after `quit`. */
async function play(which: Daemon, s: Session): Promise<Entry[]> {
  const dir = await mkdtemp(join(tmpdir(), `blockemu-nbdq-${which}-`));
  dirs.push(dir);
  await images(dir);
  const vars: Vars = { TMP: dir, PORT: String(await freePort()), BUSY: String(await busyPort()) };
  const d = await startExportDaemon(which, { dir, ...subst({ blockdevs: BLOCKDEVS, ...s.cli }, vars) });
  const c = d.client;
  const clients = new Map<string, NbdClient>();
  const log: Entry[] = [];
  try {
    for (const step of s.steps) {

      if (Array.isArray(step)) {
        const [cmd, args, n = 0] = step;
        log.push({ cmd, ...(await outcome(c, dir, cmd, subst(args, vars))) });
        log.push(...(await takeEvents(c, n, 3000, n > 0 ? 30 : 0)));
      } else if ('connect' in step) {
        const cl = await nbdConnect(d.nbdPath, step.name);
        clients.set(step.connect, cl);
        log.push({ client: step.connect, go: cl.go });
      } else if ('read' in step) {
        log.push({ client: step.read, read: await nbdRead(clients.get(step.read)!) });
      } else if ('closed' in step) {
        log.push({ client: step.closed, end: await nbdClosed(clients.get(step.closed)!) });
        log.push(...(await takeEvents(c, 0, 0, 30)));
      } else if ('hangup' in step) {
        await clients.get(step.hangup)!.wire?.close();
        clients.delete(step.hangup);
        await sleep(50);
      } else if ('exists' in step) {
        const p = subst(step.exists, vars);
        log.push({ exists: step.exists, is: await stat(p).then((st) => (st.isSocket() ? 'socket' : 'file'), () => 'absent') });
      } else if ('bitmaps' in step) {
        const nodes = await c.execute<Array<{ 'node-name': string; 'dirty-bitmaps'?: unknown }>>('query-named-block-nodes', { flat: true });
        log.push({ bitmaps: step.bitmaps, are: nodes.find((n) => n['node-name'] === step.bitmaps)?.['dirty-bitmaps'] });
      } else {
        log.push({ greet: await greet(Number(vars.PORT)) });
      }
    }
    log.push(...(await takeEvents(c, 0, 0, 50)));
  } finally {
    for (const cl of clients.values()) await cl.wire?.close();
    await sleep(clients.size > 0 ? 50 : 0);
    const after = await d.quit();
    log.push({ quit: normalise(after, dir) });
    for (const p of s.existsAfterQuit ?? []) log.push({ afterQuit: p, is: await stat(subst(p, vars)).then((st) => (st.isSocket() ? 'socket' : 'file'), () => 'absent') });
  }
  return log;
}

/** Plays the session on qsd and on ours; the logs must be equal. Returns qsd's. */
async function both(s: Session): Promise<Entry[]> {
  const theirs = await play('qsd', s);
  if (process.env['NBD_DUMP']) console.error(theirs.map((e) => JSON.stringify(e, (_k, v: unknown) => (typeof v === 'string' && v.length > 120 ? `${v.slice(0, 40)}…(${v.length})` : v))).join('\n'));
  const ours = await play(OURS, s);
  expect(ours).toEqual(theirs);
  return theirs;
}

const unix = (path: string) => ({ addr: { type: 'unix', data: { path } } });
const inet = (port: string, extra: Args = {}) => ({ addr: { type: 'inet', data: { host: '127.0.0.1', port, ...extra } } });
const exp = (id: string, node: string, extra: Args = {}): Args => ({ type: 'nbd', id, 'node-name': node, ...extra });
const err = (cmd: string, desc: string) => ({ cmd, error: { class: 'GenericError', desc } });
const ok = (cmd: string, ret: unknown = {}) => ({ cmd, return: ret });
const deleted = (id: string) => ({ event: 'BLOCK_EXPORT_DELETED', data: { id } });
const START: Step = ['nbd-server-start', unix('${TMP}/nbd.sock')];
const Q: Step = ['query-block-exports'];
const row = (id: string, node: string) => ({ type: 'nbd', id, 'node-name': node, 'shutting-down': false });
/** The NBD greeting: NBDMAGIC, IHAVEOPT, flags FIXED_NEWSTYLE|NO_ZEROES. */
const GREETING = '4e42444d4147494349484156454f50540003';

describe.skipIf(!qemu.storageDaemon || !qemu.available)(`NBD exports over QMP: ${OURS} vs qemu-storage-daemon`, () => {
  it('nbd-server-start (unix): twice, a missing directory, a stale file at the path; nbd-server-stop when not running', async () => {
    const log = await both({
      steps: [
        ['nbd-server-stop'],
        ['nbd-server-start', unix('${TMP}/nosuch/nbd.sock')],
        ['nbd-server-start', unix('${TMP}/stale.sock')],
        { exists: '${TMP}/stale.sock' },
        ['nbd-server-start', unix('${TMP}/stale.sock')],
        ['nbd-server-start', unix('${TMP}/nbd.sock')],
        ['nbd-server-stop'],
        { exists: '${TMP}/stale.sock' },
        START,
        { exists: '${TMP}/nbd.sock' },
        { connect: 'c', name: 'nosuch' },
        // (qsd 7.2.22 hangs for good in nbd-server-stop while a client is still negotiating.)
        { hangup: 'c' },
        ['nbd-server-stop'],
        ['nbd-server-stop'],
      ],
    });
    expect(log).toContainEqual(err('nbd-server-stop', 'NBD server not running'));
    expect(log).toContainEqual(err('nbd-server-start', 'NBD server already running'));
    expect(log).toContainEqual(err('nbd-server-start', 'Failed to bind socket to ${TMP}/nosuch/nbd.sock: No such file or directory'));
    // QEMU unlinks what is at the path before binding, and the socket when it stops.
    expect(log.filter((e) => 'exists' in e).map((e) => e['is'])).toEqual(['socket', 'absent', 'socket']);
    expect(log).toContainEqual({ client: 'c', go: { ok: false, reply: { step: 'option-reply', type: 'ERR_UNKNOWN', message: "export 'nosuch' not present" } } });
  });

  it("the daemon's end leaves the NBD server's Unix socket file, as QEMU does (clients remove it; nbd-server-stop removes it)", async () => {
    const log = await both({ steps: [START, ['nbd-server-start', unix('${TMP}/other.sock')]], existsAfterQuit: ['${TMP}/nbd.sock'] });
    expect(log).toContainEqual({ afterQuit: '${TMP}/nbd.sock', is: 'socket' });
    const stopped = await both({ steps: [START, ['nbd-server-stop']], existsAfterQuit: ['${TMP}/nbd.sock'] });
    expect(stopped).toContainEqual({ afterQuit: '${TMP}/nbd.sock', is: 'absent' });
  });

  it('nbd-server-start (inet): a free port, port "0", a port in use, bad ports; argument validation', async () => {
    const log = await both({
      steps: [
        ['nbd-server-start', inet('${PORT}')],
        { greet: true },
        ['nbd-server-start', inet('${PORT}')],
        ['nbd-server-stop'],
        { greet: true },
        ['nbd-server-start', inet('0')],
        ['nbd-server-stop'],
        ['nbd-server-start', inet('${PORT}', { ipv4: true })],
        ['nbd-server-stop'],
        ['nbd-server-start', inet('${BUSY}')],
        ['nbd-server-start', inet('notaport')],
        ['nbd-server-start', { addr: { type: 'inet', data: { host: '127.0.0.1', port: 10809 } } }],
        ['nbd-server-start', { addr: { type: 'inet', data: { host: '127.0.0.1' } } }],
        ['nbd-server-start', {}],
        ['nbd-server-start', { addr: { type: 'nosuch', data: {} } }],
        ['nbd-server-start', { addr: { type: 'unix', data: {} } }],
        ['nbd-server-start', { addr: { type: 'unix', path: '/tmp/x' } }],
        ['nbd-server-start', { ...unix('${TMP}/nbd.sock'), 'max-connections': -1 }],
        ['nbd-server-start', { ...unix('${TMP}/nbd.sock'), 'tls-creds': 'nosuch' }],
        ['nbd-server-start', { addr: { type: 'fd', data: { str: 'nosuch' } } }],
        ['nbd-server-start', { ...unix('${TMP}/nbd.sock'), bogus: 1 }],
        ['nbd-server-start', { ...unix('${TMP}/nbd.sock'), 'max-connections': 2 }],
        ['nbd-server-stop'],
      ],
    });
    expect(log.filter((e) => 'greet' in e)).toEqual([{ greet: GREETING }, { greet: 'refused' }]);
    expect(log).toContainEqual(err('nbd-server-start', 'Failed to find an available port: Address already in use'));
    expect(log).toContainEqual(err('nbd-server-start', "Invalid parameter type for 'addr.data.port', expected: string"));
  });

  it("block-export-add: every error, in QEMU's order of checks; the name defaults to the node name", async () => {
    const long = 'n'.repeat(4096);
    const log = await both({
      steps: [
        // Before the server: the id, the node and read-only-ness are checked first.
        ['block-export-add', exp('1bad', 'nosuch')],
        ['block-export-add', exp('e0', 'nosuch')],
        ['block-export-add', exp('e0', 'ro', { writable: true })],
        ['block-export-add', exp('e0', 'disk')],
        START,
        ['block-export-add', exp('e0', 'disk')],
        ['block-export-add', exp('e0', 'ro')],
        ['block-export-add', exp('e1', 'disk')],
        ['block-export-add', exp('e1', 'ro', { name: 'disk' })],
        ['block-export-add', exp('1bad', 'ro')],
        ['block-export-add', exp('e-1', 'nosuch')],
        ['block-export-add', exp('e1', 'ro', { writable: true })],
        ['block-export-add', exp('e1', 'disk', { name: long })],
        ['block-export-add', exp('e2', 'disk', { name: `${long}x` })],
        ['block-export-add', exp('e2', 'disk', { name: 'd', description: `${long}x` })],
        ['block-export-add', exp('e2', 'disk', { name: 'd', description: long })],
        ['block-export-add', exp('e3', 'disk', { name: '' })],
        ['block-export-add', exp('e4', 'ro', { name: 'r', writethrough: true })],
        ['block-export-add', exp('e5', 'disk', { name: 'w', writable: true })],
        ['block-export-add', { type: 'nbd', 'node-name': 'disk' }],
        ['block-export-add', { type: 'nbd', id: 'e6' }],
        ['block-export-add', { id: 'e6', 'node-name': 'disk' }],
        ['block-export-add', exp('e6', 'disk', { bogus: 1 })],
        ['block-export-add', exp('e6', 'disk', { name: 'i', iothread: 'nosuch' })],
        ['block-export-add', exp('e6', 'disk', { name: 'i', writable: 'yes' })],
        Q,
        { connect: 'c0', name: 'disk' },
        { connect: 'c1', name: 'r' },
        { connect: 'c2', name: 'w' },
        { connect: 'c3', name: '' },
        { hangup: 'c0' },
        { hangup: 'c1' },
        { hangup: 'c2' },
        { hangup: 'c3' },
        ['nbd-server-stop', undefined, 6],
      ],
    });
    expect(log).toContainEqual(err('block-export-add', 'Invalid block export id'));
    expect(log).toContainEqual(err('block-export-add', "Cannot find device='' nor node-name='nosuch'"));
    expect(log).toContainEqual(err('block-export-add', 'Cannot export read-only node as writable'));
    expect(log).toContainEqual(err('block-export-add', 'NBD server not running'));
    expect(log).toContainEqual(err('block-export-add', "Block export id 'e0' is already in use"));
    expect(log).toContainEqual(err('block-export-add', "NBD server already has export named 'disk'"));
    expect(log).toContainEqual(err('block-export-add', `export name '${long}x' too long`));
    expect(log).toContainEqual(err('block-export-add', `description '${long}x' too long`));
    expect(log).toContainEqual({ client: 'c1', go: { ok: true, readOnly: true } });
    expect(log).toContainEqual({ client: 'c2', go: { ok: true, readOnly: false } });
  });

  it('block-export-add bitmaps: unknown, enabled on a read-only export, by {node, name}, busy while exported; allocation-depth', async () => {
    const log = await both({
      steps: [
        START,
        ['block-dirty-bitmap-add', { node: 'disk', name: 'b0' }],
        ['block-dirty-bitmap-add', { node: 'disk', name: 'b1', disabled: true }],
        ['block-export-add', exp('e0', 'disk', { bitmaps: ['nosuch'] })],
        ['block-export-add', exp('e0', 'disk', { bitmaps: ['b0'] })],
        ['block-export-add', exp('e0', 'disk', { bitmaps: [{ node: 'nosuch', name: 'b0' }] })],
        ['block-export-add', exp('e0', 'disk', { bitmaps: [{ node: 'disk', name: 'nosuch' }] })],
        ['block-export-add', exp('e0', 'disk', { bitmaps: [{ node: 'disk' }] })],
        ['block-export-add', exp('e0', 'disk', { bitmaps: [7] })],
        // {node, name} skips the enabled-on-read-only check, and the bitmap may be on any node.
        ['block-export-add', exp('e0', 'ro', { name: 'r0', bitmaps: [{ node: 'disk', name: 'b0' }] })],
        ['block-export-add', exp('e1', 'disk', { name: 'd1', bitmaps: ['b1', 'b0'] })],
        ['block-export-add', exp('e1', 'disk', { name: 'd1', bitmaps: ['b1'] })],
        ['block-export-add', exp('e2', 'disk', { name: 'd2', bitmaps: ['b1'] })],
        { bitmaps: 'disk' },
        ['block-dirty-bitmap-remove', { node: 'disk', name: 'b0' }],
        ['block-dirty-bitmap-remove', { node: 'disk', name: 'b1' }],
        ['block-export-add', exp('e3', 'disk', { name: 'ad', 'allocation-depth': true })],
        ['block-export-add', exp('e4', 'disk', { name: 'bw', writable: true, bitmaps: ['nosuch'] })],
        Q,
        ['block-export-del', { id: 'e0' }, 1],
        ['block-export-del', { id: 'e1' }, 1],
        { bitmaps: 'disk' },
        ['block-dirty-bitmap-remove', { node: 'disk', name: 'b0' }],
        ['block-dirty-bitmap-remove', { node: 'disk', name: 'b1' }],
        ['nbd-server-stop', undefined, 1],
      ],
    });
    expect(log).toContainEqual(err('block-export-add', "Bitmap 'nosuch' is not found"));
    expect(log).toContainEqual(err('block-export-add', "Enabled bitmap 'b0' incompatible with readonly export"));
    expect(log).toContainEqual(err('block-export-add', "Bitmap 'b1' is currently in use by another operation and cannot be used"));
    expect(log).toContainEqual(err('block-dirty-bitmap-remove', "Bitmap 'b0' is currently in use by another operation and cannot be used"));
  });

  it('query-block-exports lists the newest first; nbd-server-stop deletes every export (events oldest first) and they stay gone', async () => {
    const log = await both({
      steps: [
        Q,
        START,
        Q,
        ['block-export-add', exp('ea', 'disk', { name: 'a' })],
        ['block-export-add', exp('eb', 'ro', { name: 'b' })],
        ['block-export-add', exp('ec', 'disk', { name: 'c', writable: true })],
        Q,
        ['block-export-del', { id: 'eb' }, 1],
        ['block-export-add', exp('ed', 'ro', { name: 'd' })],
        ['block-export-add', exp('eb', 'ro', { name: 'b' })],
        Q,
        ['nbd-server-stop', undefined, 4],
        Q,
        ['nbd-server-stop'],
        START,
        Q,
        ['block-export-add', exp('ea', 'disk', { name: 'a' })],
        ['block-export-add', exp('eb', 'ro', { name: 'b' })],
      ],
    });
    expect(log).toContainEqual(ok('query-block-exports', [row('ec', 'disk'), row('eb', 'ro'), row('ea', 'disk')]));
    const stop = log.findIndex((e) => e['cmd'] === 'nbd-server-stop' && 'return' in e);
    expect(log.slice(stop + 1, stop + 5)).toEqual([deleted('ea'), deleted('ec'), deleted('ed'), deleted('eb')]);
    // quit deletes the rest, oldest first.
    expect(log[log.length - 1]).toEqual({ quit: [deleted('ea'), deleted('eb')] });
  });

  it('block-export-del: unknown, safe with a client ("still in use"), hard with a client (dropped), safe without; nbd-server-stop drops clients', async () => {
    const log = await both({
      steps: [
        START,
        ['block-export-add', exp('e0', 'disk', { name: 'exp' })],
        ['block-export-add', exp('e1', 'ro', { name: 'other' })],
        ['block-export-del', { id: 'nosuch' }],
        ['block-export-del', { id: 'e0', mode: 'nosuch' }],
        ['block-export-del', {}],
        { connect: 'c1', name: 'exp' },
        ['block-export-del', { id: 'e0' }],
        ['block-export-del', { id: 'e0', mode: 'safe' }],
        Q,
        { read: 'c1' },
        ['block-export-del', { id: 'e0', mode: 'hard' }, 1],
        { closed: 'c1' },
        Q,
        { connect: 'c2', name: 'exp' },
        { hangup: 'c2' },
        ['block-export-del', { id: 'e0' }],
        // A client on one export does not keep another in use.
        ['block-export-add', exp('e0', 'disk', { name: 'exp' })],
        { connect: 'c3', name: 'exp' },
        ['block-export-del', { id: 'e1' }, 1],
        Q,
        // The client goes away by itself: safe mode works again.
        { hangup: 'c3' },
        ['block-export-del', { id: 'e0' }, 1],
        ['block-export-add', exp('e2', 'disk', { name: 'exp' })],
        { connect: 'c4', name: 'exp' },
        ['nbd-server-stop', undefined, 1],
        { closed: 'c4' },
        Q,
      ],
    });
    expect(log).toContainEqual(err('block-export-del', "Export 'nosuch' is not found"));
    expect(log).toContainEqual(err('block-export-del', "export 'e0' still in use"));
    expect(log).toContainEqual({ client: 'c1', read: 'OK' });
    expect(log).toContainEqual({ client: 'c1', end: 'closed' });
    expect(log).toContainEqual({ client: 'c4', end: 'closed' });
    expect(log).toContainEqual({ client: 'c2', go: { ok: false, reply: { step: 'option-reply', type: 'ERR_UNKNOWN', message: "export 'exp' not present" } } });
  });

  it('blockdev-del of an exported node, and of its file (whose resize an export of the qcow2 node unshares)', async () => {
    const log = await both({
      steps: [
        START,
        ['block-export-add', exp('e0', 'disk')],
        ['blockdev-del', { 'node-name': 'disk' }],
        ['blockdev-del', { 'node-name': 'disk-file' }],
        ['block-export-add', exp('e1', 'disk-file')],
        ['block-export-add', exp('e1', 'ro-file')],
        ['blockdev-del', { 'node-name': 'ro' }],
        ['blockdev-del', { 'node-name': 'ro-file' }],
        ['block-export-del', { id: 'e1' }, 1],
        ['blockdev-del', { 'node-name': 'ro-file' }],
        ['block-export-del', { id: 'e0' }, 1],
        ['blockdev-del', { 'node-name': 'disk' }],
        ['blockdev-del', { 'node-name': 'disk-file' }],
        Q,
      ],
    });
    expect(log).toContainEqual(err('blockdev-del', 'Node disk is in use'));
  });

  it('legacy nbd-server-add / nbd-server-remove: id and name from device, read-only nodes silently downgraded, one bitmap', async () => {
    const log = await both({
      steps: [
        ['nbd-server-add', { device: 'disk' }],
        ['nbd-server-remove', { name: 'disk' }],
        START,
        ['nbd-server-add', { device: 'nosuch' }],
        ['nbd-server-add', { device: 'disk' }],
        ['nbd-server-add', { device: 'disk' }],
        ['nbd-server-add', { device: 'disk', name: 'w', writable: true, description: 'legacy' }],
        ['nbd-server-add', { device: 'ro', writable: true }],
        ['nbd-server-add', { device: 'ro', name: 'ro2', bitmap: 'nosuch' }],
        ['block-dirty-bitmap-add', { node: 'disk', name: 'b0' }],
        ['nbd-server-add', { device: 'disk', name: 'bm', bitmap: 'b0' }],
        ['nbd-server-add', { device: 'disk', name: 'bm', bitmap: 'b0', writable: true }],
        ['nbd-server-add', { device: 'disk', name: 'x', bitmaps: ['b0'] }],
        ['nbd-server-add', { device: 'disk', name: 'x', 'allocation-depth': true }],
        Q,
        ['block-export-add', exp('disk', 'disk', { name: 'other' })],
        ['block-export-add', exp('other', 'disk', { name: 'ro' })],
        { connect: 'cw', name: 'w' },
        { connect: 'cro', name: 'ro' },
        { hangup: 'cw' },
        { hangup: 'cro' },
        ['nbd-server-remove', { name: 'nosuch' }],
        ['nbd-server-remove', { name: 'ro' }, 1],
        ['nbd-server-remove', { name: 'w', mode: 'hard' }, 1],
        ['nbd-server-remove', { name: 'bm', mode: 'nosuch' }],
        ['block-export-del', { id: 'bm' }, 1],
        ['block-dirty-bitmap-remove', { node: 'disk', name: 'b0' }],
        Q,
        ['nbd-server-stop', undefined, 1],
      ],
    });
    expect(log).toContainEqual({ client: 'cro', go: { ok: true, readOnly: true } });
    expect(log).toContainEqual({ client: 'cw', go: { ok: true, readOnly: false } });
    expect(log).toContainEqual(err('nbd-server-add', "Block export id 'disk' is already in use"));
  });

  it('command line: --nbd-server (unix) and --export start a session with the exports; quit deletes them', async () => {
    const log = await both({
      cli: {
        nbdServer: 'addr.type=unix,addr.path=${TMP}/nbd.sock',
        exports: ['type=nbd,id=e0,node-name=disk,name=exp,writable=on,description=hello', 'nbd,id=e1,node-name=ro,allocation-depth=on', 'type=nbd,id=e2,node-name=disk,name=wt,writethrough=on'],
      },
      steps: [
        Q,
        START,
        { connect: 'c0', name: 'exp' },
        { connect: 'c1', name: 'ro' },
        ['block-export-del', { id: 'e1' }],
        { hangup: 'c0' },
        { hangup: 'c1' },
        ['block-export-del', { id: 'e2' }, 1],
        Q,
      ],
    });
    expect(log[0]).toEqual(ok('query-block-exports', [row('e2', 'disk'), row('e1', 'ro'), row('e0', 'disk')]));
    expect(log[log.length - 1]).toEqual({ quit: [deleted('e0'), deleted('e1')] });
  });

  it('command line: --nbd-server (inet, max-connections) and --export with bitmaps', async () => {
    const log = await both({
      cli: {
        nbdServer: 'addr.type=inet,addr.host=127.0.0.1,addr.port=${PORT},max-connections=4',
        exports: ['type=nbd,id=e0,node-name=ro,name=exp'],
      },
      steps: [Q, { greet: true }, ['block-dirty-bitmap-add', { node: 'disk', name: 'b0', disabled: true }], ['block-export-add', exp('e1', 'disk', { bitmaps: ['b0'] })], Q],
    });
    expect(log).toContainEqual({ greet: GREETING });
  });

  const bad: Array<[string, Omit<ExportDaemonOptions, 'dir'>]> = [
    ['--export of an unknown node (before --nbd-server: the node is looked up first)', { exportsFirst: true, nbdServer: true, exports: ['type=nbd,id=e0,node-name=nosuch'] }],
    ['--export of an unknown node', { nbdServer: true, exports: ['type=nbd,id=e0,node-name=nosuch'] }],
    ['--export before --nbd-server', { exportsFirst: true, nbdServer: true, exports: ['type=nbd,id=e0,node-name=disk'] }],
    ['--export writable of a read-only node before --nbd-server', { exportsFirst: true, nbdServer: true, exports: ['type=nbd,id=e0,node-name=ro,writable=on'] }],
    ['--export before the --blockdev it names', { leadingArgs: ['--export', 'type=nbd,id=e0,node-name=disk'], nbdServer: true }],
    ['--export without --nbd-server', { exports: ['type=nbd,id=e0,node-name=disk'] }],
    ['--export without an id', { nbdServer: true, exports: ['type=nbd,node-name=disk'] }],
    ['--export with a bad bool', { nbdServer: true, exports: ['type=nbd,id=e0,node-name=disk,writable=maybe'] }],
    ['--export with an unknown key', { nbdServer: true, exports: ['type=nbd,id=e0,node-name=disk,bogus=x'] }],
    ['--export with bitmap= (the help text says so; the option is bitmaps)', { nbdServer: true, exports: ['type=nbd,id=e0,node-name=disk,bitmap=b0'] }],
    ['--export of an unknown bitmap', { nbdServer: true, exports: ['nbd,id=e0,node-name=disk,bitmaps.0=b0'] }],
    ['--export of an unknown type', { nbdServer: true, exports: ['type=nosuch,id=e0,node-name=disk'] }],
    ['--export writable of a read-only node', { nbdServer: true, exports: ['type=nbd,id=e0,node-name=ro,writable=on'] }],
    ['two --export with one id', { nbdServer: true, exports: ['type=nbd,id=e0,node-name=disk', 'type=nbd,id=e0,node-name=ro'] }],
    ['two --export with one name', { nbdServer: true, exports: ['type=nbd,id=e0,node-name=disk', 'type=nbd,id=e1,node-name=disk'] }],
    ['--nbd-server with an unknown key', { nbdServer: 'addr.type=unix,addr.path=${TMP}/nbd.sock,bogus=1' }],
    ['--nbd-server without addr.path', { nbdServer: 'addr.type=unix' }],
    ['--nbd-server without addr.port', { nbdServer: 'addr.type=inet,addr.host=127.0.0.1' }],
    ['--nbd-server in a missing directory', { nbdServer: 'addr.type=unix,addr.path=${TMP}/nosuch/nbd.sock' }],
    ['--nbd-server twice', { nbdServer: true, leadingArgs: ['--nbd-server', 'addr.type=unix,addr.path=${TMP}/first.sock'] }],
    ['--nbd-server with a bad max-connections', { nbdServer: 'addr.type=unix,addr.path=${TMP}/nbd.sock,max-connections=-1' }],
  ];

  it('command line: bad --nbd-server / --export (exit code and stderr)', async () => {
    const results: Record<'theirs' | 'ours', unknown[]> = { theirs: [], ours: [] };
    for (const [what, cli] of bad) {
      for (const [key, which] of [['theirs', 'qsd'], ['ours', OURS]] as const) {
        const dir = await mkdtemp(join(tmpdir(), `blockemu-nbdc-${which}-`));
        dirs.push(dir);
        await images(dir);
        const vars: Vars = { TMP: dir, PORT: '0', BUSY: '0' };
        results[key].push({ what, ...(await failedStart(which, { dir, ...subst({ blockdevs: BLOCKDEVS, ...cli }, vars) })) });
      }
    }
    if (process.env['NBD_DUMP']) console.error(results.theirs.map((r) => JSON.stringify(r)).join('\n'));
    expect(results.ours).toEqual(results.theirs);
    for (const r of results.theirs) expect(r).toMatchObject({ code: 1 });
  });
});

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { BlockdevSpec } from './blockdev/open.js';
import { Daemon, VERSION } from './daemon.js';
import { type ConnectOptions, QmpClient } from './qmp/client.js';
import { addBlockdev } from './qmp/commands/blockdev.js';
import { exportSpec } from './qmp/commands/exports.js';
import { makeQmpParser } from './qmp/parser.js';
import { BlockdevOptions } from './qmp/schema/block-core.js';
import { BlockExportOptions } from './qmp/schema/block-export.js';

export interface StartDaemonOptions {
  /** Where the QMP socket goes; default: qmp.sock in a fresh temp directory (removed on close). */
  socketPath?: string;
  /**
   * Nodes to add before the socket is handed out, as blockdev-add adds them
   * (checked against the BlockdevOptions schema, a node-name required,
   * monitor-owned); a refusal rejects with blockdev-add's words.
   */
  blockdevs?: BlockdevSpec[];
  /**
   * 'virtual': jobs' time (rate limits, sleeps) is virtual and jumps ahead
   * whenever every job waits only on it, so a rate-limited backup runs as
   * fast as the disk allows with the events and progress of real time;
   * `__org.blockemu_clock-advance` moves it by hand. Default 'real'.
   */
  clock?: 'real' | 'virtual';
  /**
   * An NBD server on a Unix socket (`nbd.sock` beside the QMP socket unless
   * `socketPath` says otherwise) and exports on it, as --nbd-server and
   * --export start them; each export is what block-export-add takes
   * (`type` may be left out: it is 'nbd').
   */
  nbd?: { socketPath?: string; exports?: Array<Record<string, unknown>> };
  /**
   * Where the lines QEMU would print on stderr go (a node that could not
   * flush or store its bitmaps when closed, …); default: stderr, prefixed
   * `blockemu: ` outside a monitor command.
   */
  onErrorReport?: (message: string) => void;
  /**
   * Faults to arm once the blockdevs are added, as
   * `__org.blockemu_fault-add` takes them (`{ 'node-name': 'disk0', type:
   * 'error', iotype: 'write', nth: 3, errno: 'ENOSPC' }`; README "Fault
   * scenarios"). A `crash` fault ends the process hosting the daemon.
   */
  faults?: Array<Record<string, unknown>>;
  /**
   * Logs every QMP exchange to this file as `blockemu daemon --record`
   * does; the header holds the equivalent daemon command line (the
   * blockdevs, NBD server and exports as JSON options), so `blockemu
   * replay FILE --qsd` can play the session on qemu-storage-daemon.
   */
  record?: string;
}

/** The command line a daemon started with these options would have had (for a recording's header). */
function equivalentArgv(opts: StartDaemonOptions, socketPath: string, nbdSocketPath: string | undefined): string[] {
  const argv = (opts.blockdevs ?? []).flatMap((b) => ['--blockdev', JSON.stringify(b)]);
  if (nbdSocketPath !== undefined) {
    argv.push('--nbd-server', JSON.stringify({ addr: { type: 'unix', path: nbdSocketPath } }));
    for (const e of opts.nbd?.exports ?? []) argv.push('--export', JSON.stringify({ type: 'nbd', ...e }));
  }
  if (opts.clock) argv.push('--clock', opts.clock);
  // blockemu's own option: such a recording replays on blockemu only.
  for (const f of opts.faults ?? []) argv.push('--fault', JSON.stringify(f));
  return [...argv, '--chardev', `socket,id=m0,path=${socketPath},server=on,wait=off`, '--monitor', 'chardev=m0'];
}

export interface EmbeddedDaemon {
  readonly socketPath: string;
  /** The NBD server's socket, when `nbd` was given. */
  readonly nbdSocketPath: string | undefined;
  /** `nbd+unix:///NAME?socket=…`, the URI qemu-img, qemu-io and libnbd take for an export. */
  nbdUri(name: string): string;
  /** A new client, negotiated (call as often as you like; each is its own connection; closed with the daemon). */
  client(opts?: ClientOptions): Promise<QmpClient>;
  /** Shuts the daemon down and removes what it created. Idempotent; resolves even when a node could not be flushed (that is reported). */
  close(): Promise<void>;
  /** `await using d = await startDaemon(…)` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** What `EmbeddedDaemon.client` passes on to `QmpClient.connect`. */
export type ClientOptions = Pick<ConnectOptions, 'commandTimeoutMs'>;

const internals = new WeakMap<EmbeddedDaemon, Daemon>();

/**
 * The daemon object behind an EmbeddedDaemon: blockemu's own tests look
 * at its graph. Not part of the package's API (index.ts does not export
 * it), so internals can change without breaking users.
 */
export function internalDaemon(d: EmbeddedDaemon): Daemon {
  const daemon = internals.get(d);
  if (!daemon) throw new Error('not a daemon started by startDaemon');
  return daemon;
}

/**
 * A daemon in this process for users' tests: `await startDaemon()` gives a
 * socket path and clients, and `close()` cleans up, with no child process
 * to manage.
 */
export async function startDaemon(opts: StartDaemonOptions = {}): Promise<EmbeddedDaemon> {
  const dir = opts.socketPath ? undefined : await mkdtemp(join(tmpdir(), 'blockemu-'));
  const socketPath = opts.socketPath ?? join(dir!, 'qmp.sock');
  const nbdSocketPath = opts.nbd ? (opts.nbd.socketPath ?? join(dirname(socketPath), 'nbd.sock')) : undefined;
  const record =
    opts.record === undefined
      ? undefined
      : { path: resolve(opts.record), header: { argv: equivalentArgv(opts, socketPath, nbdSocketPath), cwd: process.cwd(), program: VERSION.package } };
  const daemon = await Daemon.start({ monitors: [{ path: socketPath }], makeParser: makeQmpParser, clock: opts.clock, errorReport: opts.onErrorReport, record }).catch(
    async (err: unknown) => {
      if (dir) await rm(dir, { recursive: true, force: true });
      throw err;
    },
  );
  const clients: QmpClient[] = [];
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
      await daemon.shutdown('close');
      if (dir) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    })());
  try {
    // As blockdev-add takes them: the schema first (misspelled or mistyped options refused in QEMU's words), then the node.
    for (const spec of opts.blockdevs ?? []) await addBlockdev(daemon, BlockdevOptions.visit(spec, []) as BlockdevSpec);
    if (opts.faults?.length) {
      const [{ addFault }, { FaultOptions }] = await Promise.all([import('./qmp/commands/faults.js'), import('./qmp/schema/blockemu-faults.js')]);
      for (const f of opts.faults) addFault(daemon.graph, FaultOptions.visit(f, []));
    }
    if (nbdSocketPath !== undefined) {
      await daemon.exports.startNbdServer({ type: 'unix', path: nbdSocketPath }, {});
      for (const e of opts.nbd?.exports ?? []) await daemon.exports.add(exportSpec(BlockExportOptions.visit({ type: 'nbd', ...e }, [])));
    }
  } catch (err) {
    await close();
    throw err;
  }
  const embedded: EmbeddedDaemon = {
    socketPath,
    nbdSocketPath,
    nbdUri: (name) => {
      if (nbdSocketPath === undefined) throw new Error('startDaemon: no NBD server (pass the nbd option)');
      return `nbd+unix:///${name}?socket=${nbdSocketPath}`;
    },
    async client(o: ClientOptions = {}) {
      const c = await QmpClient.connect(socketPath, { commandTimeoutMs: o.commandTimeoutMs });
      clients.push(c);
      return c;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
  internals.set(embedded, daemon);
  return embedded;
}

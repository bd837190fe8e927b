/**
 * NBD servers for the client driver's tests: qemu-nbd (its requests
 * traced, so a test sees what our client sent on the wire),
 * qemu-storage-daemon's export and blockemu's own, each serving one image
 * of a directory as export `exp` on a Unix socket there, passing TRIM down
 * to the image (discard=unmap); and a node of
 * the client driver opened in a graph of the test's own.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BlockGraph } from '../../src/blockdev/graph.js';
import type { BlockNode } from '../../src/blockdev/node.js';
import { type BlockdevSpec, openBlockdev } from '../../src/blockdev/open.js';
import { startExportDaemon } from './export-daemon.js';

export type ServerKind = 'blockemu' | 'qsd' | 'qemu-nbd';

export interface NbdServer {
  /** The Unix socket the server listens on. */
  path: string;
  /** `nbd+unix:///exp?socket=…`, for QEMU's tools. */
  uri: string;
  /** Requests a QEMU server received ({type, flags, from, len}; complete once stopped), [] for blockemu's. */
  requests(): Array<{ type: number; flags: number; from: number; len: number }>;
  stop(): Promise<void>;
}

export interface ServeOptions {
  format?: 'raw' | 'qcow2';
  readOnly?: boolean;
  /** qemu-storage-daemon only: a blkdebug node between export and image (align, max-transfer) for servers with block size limits. */
  blkdebug?: Record<string, unknown>;
  /** Daemons only: a bitmap of the image the export offers as qemu:dirty-bitmap:NAME. */
  bitmap?: string;
  /** The socket's file name in `dir` (default nbd-<kind>.sock). */
  socket?: string;
}

/** The requests a QEMU server traced (nbd_receive_request) in its stderr. */
function tracedRequests(stderr: string): Array<{ type: number; flags: number; from: number; len: number }> {
  return [...stderr.matchAll(/\.flags = 0x([0-9a-f]+), \.type = 0x([0-9a-f]+), from = (\d+), len = (\d+)/g)].map((m) => ({
    flags: parseInt(m[1]!, 16),
    type: parseInt(m[2]!, 16),
    from: Number(m[3]),
    len: Number(m[4]),
  }));
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

/**
 * Waits until qemu-nbd accepts connections on `path`. The socket file
 * appears at bind(), a moment before listen(): a client that comes in
 * between is refused, so a connection is tried, not just the file.
 */
async function waitFor(path: string, proc: ChildProcess, what: () => string): Promise<void> {
  const accepts = () =>
    new Promise<boolean>((resolve) => {
      const s = connect(path);
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
  for (let i = 0; i < 400; i++) {
    if (proc.exitCode !== null) throw new Error(`qemu-nbd exited: ${what()}`);
    if (existsSync(path) && (await accepts())) return;
    await sleep(10);
  }
  throw new Error(`qemu-nbd did not accept connections on ${path}: ${what()}`);
}

/** qemu-nbd serving `image` until stopped (persistent, several clients), with its received requests traced. */
export async function startQemuNbd(dir: string, image: string, o: ServeOptions = {}): Promise<NbdServer> {
  const path = join(dir, o.socket ?? 'nbd-qemu-nbd.sock');
  const args = ['--trace', 'nbd_receive_request', '--discard=unmap', '-t', '-e', '16', '-f', o.format ?? 'raw', '-x', 'exp', '-k', path, ...(o.readOnly ? ['-r'] : []), join(dir, image)];
  const proc = spawn('qemu-nbd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(proc);
  let err = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => (err += d));
  await waitFor(path, proc, () => err);
  const exited = new Promise((r) => proc.once('exit', r));
  return {
    path,
    uri: `nbd+unix:///exp?socket=${path}`,
    requests: () => tracedRequests(err),
    async stop() {
      proc.kill('SIGTERM');
      await exited;
      live.delete(proc);
    },
  };
}

/** qemu-storage-daemon or blockemu exporting `image` as `exp` (writable unless readOnly). */
export async function startDaemonExport(which: 'qsd' | 'blockemu', dir: string, image: string, o: ServeOptions = {}): Promise<NbdServer> {
  const file = { driver: 'file', filename: join(dir, image) };
  // A blkdebug node is exported itself: a format above it would not pass its limits on to clients.
  const format = o.blkdebug
    ? { driver: 'blkdebug', 'node-name': 'img', discard: 'unmap', image: file, ...o.blkdebug }
    : { driver: o.format ?? 'raw', 'node-name': 'img', discard: 'unmap', file };
  const sub = join(dir, `${which}-${o.socket ?? 'srv'}`);
  await mkdir(sub, { recursive: true });
  const d = await startExportDaemon(which, {
    dir: sub,
    blockdevs: [JSON.stringify(format)],
    nbdServer: true,
    ...(which === 'qsd' ? { leadingArgs: ['--trace', 'nbd_receive_request'] } : {}),
    exports: [`type=nbd,id=e,node-name=img,name=exp,writable=${o.readOnly ? 'off' : 'on'}${o.bitmap ? `,bitmaps.0=${o.bitmap}` : ''}`],
  });
  return {
    path: d.nbdPath,
    uri: `nbd+unix:///exp?socket=${d.nbdPath}`,
    requests: () => tracedRequests(d.stderr()),
    async stop() {
      await d.quit();
    },
  };
}

export function startServer(kind: ServerKind, dir: string, image: string, o: ServeOptions = {}): Promise<NbdServer> {
  return kind === 'qemu-nbd' ? startQemuNbd(dir, image, o) : startDaemonExport(kind, dir, image, o);
}

/** A node of the nbd driver on `path`, export `exp`, in a graph of its own (closed with the graph). */
export async function openNbdNode(path: string, extra: Partial<BlockdevSpec> = {}): Promise<{ graph: BlockGraph; node: BlockNode }> {
  const graph = new BlockGraph();
  const node = await openBlockdev(graph, { driver: 'nbd', 'node-name': 'n', server: { type: 'unix', path }, export: 'exp', ...extra });
  return { graph, node };
}

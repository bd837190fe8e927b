/**
 * Where a migration stream goes or comes from (migration/socket.c, exec.c,
 * fd.c): the URI's transport, as a byte stream.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { unlink } from 'node:fs/promises';
import { createServer, type Server, Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';

export type MigrationUri =
  | { kind: 'exec'; command: string }
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'fd'; fd: number };

/** A migration URI, or undefined for a protocol QEMU does not know. */
export function parseMigrationUri(uri: string): MigrationUri | undefined {
  if (uri.startsWith('exec:')) return { kind: 'exec', command: uri.slice(5) };
  if (uri.startsWith('unix:')) return { kind: 'unix', path: uri.slice(5) };
  if (uri.startsWith('fd:')) return /^\d+$/.test(uri.slice(3)) ? { kind: 'fd', fd: Number(uri.slice(3)) } : undefined;
  if (uri.startsWith('tcp:')) {
    const rest = uri.slice(4);
    const colon = rest.lastIndexOf(':');
    if (colon < 0) return undefined;
    let host = rest.slice(0, colon);
    if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
    return { kind: 'tcp', host: host === '' ? '0.0.0.0' : host, port: Number(rest.slice(colon + 1).split(',')[0]) };
  }
  return undefined;
}

/** The sending end: written, then closed; `done` settles once everything reached the other side (the command exited). */
export interface OutgoingChannel {
  stream: Writable;
  done: Promise<void>;
  abort(): void;
}

function socketDone(s: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    s.once('close', (hadError) => (hadError ? reject(new Error('Connection reset')) : resolve()));
    s.once('error', reject);
  });
}

/** Connects to the destination (socket_start_outgoing_migration, exec_start_outgoing_migration). */
export async function connectOutgoing(uri: MigrationUri): Promise<OutgoingChannel> {
  if (uri.kind === 'exec') {
    // The command reads the stream on its stdin; its stdout goes nowhere (qio_channel_command_new_spawn, O_WRONLY).
    // In a process group of its own, so a cancel ends the command's children too (`cat > FIFO` waiting for a reader).
    const child: ChildProcess = spawn('/bin/sh', ['-c', uri.command], { stdio: ['pipe', 'ignore', 'inherit'], detached: true });
    const done = new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code, signal) => (signal ? reject(new Error(`killed by ${signal}`)) : resolve()));
    });
    child.stdin!.on('error', () => undefined);
    const abort = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
      child.stdin!.destroy();
    };
    return { stream: child.stdin!, done, abort };
  }
  const socket = uri.kind === 'fd' ? new Socket({ fd: uri.fd, readable: true, writable: true }) : new Socket();
  const done = socketDone(socket);
  done.catch(() => undefined);
  if (uri.kind !== 'fd') {
    await whenReady(socket, (ready) => (uri.kind === 'unix' ? socket.connect(uri.path, ready) : socket.connect(uri.port, uri.host, ready)));
  }
  return { stream: socket, done, abort: () => socket.destroy() };
}

/** Resolves once `start` reports it is ready (connected, listening); the emitter's first error before that rejects. */
function whenReady(e: Socket | Server, start: (ready: () => void) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    e.once('error', reject);
    start(() => {
      e.off('error', reject);
      resolve();
    });
  });
}

/** The receiving end, waiting for its one stream. */
export interface IncomingChannel {
  /** Resolves with the stream once the source connects (at once for exec: and fd:). */
  stream: Promise<Readable>;
  close(): void;
}

/** Starts listening (or the command) for the incoming stream (qemu_start_incoming_migration). */
export async function listenIncoming(uri: MigrationUri): Promise<IncomingChannel> {
  if (uri.kind === 'exec') {
    // The command writes the stream on its stdout; its stdin is /dev/null.
    const child = spawn('/bin/sh', ['-c', uri.command], { stdio: ['ignore', 'pipe', 'inherit'] });
    // Waiting for a source keeps nothing alive: the process ends at quit whether one came or not.
    child.unref();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    return { stream: Promise.resolve(child.stdout), close: () => undefined };
  }
  if (uri.kind === 'fd') {
    const s = new Socket({ fd: uri.fd, readable: true, writable: false });
    return { stream: Promise.resolve(s), close: () => undefined };
  }
  const server: Server = createServer();
  if (uri.kind === 'unix') await unlink(uri.path).catch(() => undefined);
  await whenReady(server, (ready) => (uri.kind === 'unix' ? server.listen(uri.path, ready) : server.listen(uri.port, uri.host, ready)));
  server.unref();
  // One source: the listener goes once it has connected (QEMU stops listening too).
  const stream = new Promise<Readable>((resolve) =>
    server.once('connection', (s) => {
      server.close();
      resolve(s);
    }),
  );
  return { stream, close: () => server.close() };
}

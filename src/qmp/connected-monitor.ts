import { connect } from 'node:net';
import { Duplex } from 'node:stream';
import { BlockError } from '../image/errors.js';
import { strerrorOf } from '../image/errno.js';
import { QmpSession, type SessionOptions } from './session.js';

/** What the daemon asks of a monitor, whether it listens (QmpServer) or has its one connection. */
export interface Monitor {
  readonly path: string;
  broadcast(name: string, data: unknown, now?: number): void;
  close(): Promise<void>;
  readonly clientCount: number;
}

/**
 * A QMP monitor with one connection it did not accept: a chardev in client
 * mode (`-chardev socket,path=…` without server=on, which QEMU's Python
 * harness uses: it listens, QEMU connects) or `-qmp stdio`. When the peer
 * goes away the monitor is dead, as QEMU's is; the process runs on.
 */
export class QmpConnectedMonitor implements Monitor {
  private session!: QmpSession;
  private ended = false;

  private constructor(readonly path: string) {}

  /** Connects to a listening Unix socket; QEMU's message when nothing listens there. */
  static async connect(path: string, opts: SessionOptions): Promise<QmpConnectedMonitor> {
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', (err) => reject(new BlockError('INVALID_ARGUMENT', `Failed to connect to '${path}': ${strerrorOf(err)}`, { cause: err })));
    });
    return QmpConnectedMonitor.over(path, socket, opts);
  }

  /** The monitor on the process's stdin and stdout (-qmp stdio). */
  static stdio(opts: SessionOptions): QmpConnectedMonitor {
    return QmpConnectedMonitor.over('stdio', Duplex.from({ readable: process.stdin, writable: process.stdout }), opts);
  }

  private static over(path: string, stream: Duplex, opts: SessionOptions): QmpConnectedMonitor {
    const monitor = new QmpConnectedMonitor(path);
    monitor.session = new QmpSession(stream, opts, () => (monitor.ended = true), path);
    monitor.session.start();
    return monitor;
  }

  broadcast(name: string, data: unknown, now = Date.now() * 1000): void {
    this.session.sendEvent({ event: name, ...(data === undefined ? {} : { data }), timestamp: { seconds: Math.floor(now / 1e6), microseconds: now % 1e6 } });
  }

  get clientCount(): number {
    return this.ended ? 0 : 1;
  }

  async close(): Promise<void> {
    this.session.close();
  }
}

import { connect, Socket } from 'node:net';
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
  /** A human monitor: resolves once the first input it got has been taken in (its commands begun). */
  readonly firstInput?: Promise<void>;
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

  /** The monitor on a connected socket the process inherited (`-chardev socket,fd=N`). */
  static fromFd(fd: number, opts: SessionOptions): QmpConnectedMonitor {
    return QmpConnectedMonitor.over(`fd=${fd}`, new Socket({ fd, readable: true, writable: true }), opts);
  }

  /** The monitor on the process's stdin and stdout (-qmp stdio). */
  static stdio(opts: SessionOptions): QmpConnectedMonitor {
    return QmpConnectedMonitor.over('stdio', new StdioStream(), opts);
  }

  private static over(path: string, stream: Duplex, opts: SessionOptions): QmpConnectedMonitor {
    const monitor = new QmpConnectedMonitor(path);
    monitor.session = new QmpSession(stream, opts, () => (monitor.ended = true), path);
    monitor.session.start();
    // After the session's own listener: by the time this runs, the chunk's commands have begun.
    stream.once('data', () => monitor.tookInput());
    return monitor;
  }

  private tookInput!: () => void;
  readonly firstInput = new Promise<void>((r) => (this.tookInput = r));

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

/**
 * stdin and stdout as one stream for a session. Closing the session stops
 * reading stdin and leaves stdout open: the process's own streams are not
 * the session's to destroy (what was written still has to reach the pipe).
 */
export class StdioStream extends Duplex {
  private readonly onData = (d: Buffer) => {
    if (!this.push(d)) process.stdin.pause();
  };
  private readonly onEnd = () => this.push(null);

  constructor() {
    super();
    process.stdin.on('data', this.onData);
    process.stdin.once('end', this.onEnd);
  }

  override _read(): void {
    process.stdin.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    // Handed to stdout at once, not after the previous write's callback: what else the process prints there (HMP
    // qemu-io's lines) stays in the order QEMU's single stdout has it (an event sent during a command comes first).
    process.stdout.write(chunk, (err) => {
      if (err) this.destroy(err);
    });
    done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    process.stdin.off('data', this.onData);
    process.stdin.off('end', this.onEnd);
    process.stdin.pause();
    (process.stdin as { unref?: () => void }).unref?.();
    done(err);
  }
}

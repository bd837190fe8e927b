import { connect, type Socket } from 'node:net';
import { QmpError, type QmpErrorClass } from './error.js';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

/**
 * A QMP client for users' tests (and ours): connects, negotiates
 * capabilities, and runs commands with ids so replies are matched even
 * when events interleave. Works against blockemu and qemu-storage-daemon.
 */
export class QmpClient {
  greeting: unknown;
  private buf = '';
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly backlog: QmpEvent[] = [];
  private readonly waiters = new Set<() => void>();
  private closed = false;
  private closeError: Error | undefined;

  private constructor(private readonly socket: Socket) {}

  /**
   * Connects to a monitor socket and completes `qmp_capabilities` (unless
   * `negotiate: false`). A server that accepts but does not greet within
   * `timeoutMs` (qemu-storage-daemon while another client holds its
   * monitor), or hangs up first, fails the call; the socket is closed then.
   */
  static async connect(path: string, opts: { negotiate?: boolean; timeoutMs?: number } = {}): Promise<QmpClient> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect(path);
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    });
    const client = new QmpClient(socket);
    socket.setEncoding('utf8');
    let timer: NodeJS.Timeout | undefined;
    const greeting = new Promise<unknown>((resolve, reject) => {
      client.onGreeting = resolve;
      client.onGreetingLost = reject;
      timer = setTimeout(() => reject(new Error(`no QMP greeting on ${path}`)), opts.timeoutMs ?? 10_000);
    });
    socket.on('data', (d: string) => client.onData(d));
    socket.on('close', () => client.onClose());
    socket.on('error', (err) => (client.closeError = err));
    try {
      client.greeting = await greeting;
      if (opts.negotiate ?? true) await client.execute('qmp_capabilities');
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
      client.onGreeting = client.onGreetingLost = undefined;
    }
    return client;
  }

  private onGreetingLost: ((err: Error) => void) | undefined;

  private onGreeting: ((g: unknown) => void) | undefined;

  private onData(d: string): void {
    this.buf += d;
    for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (line !== '') this.onMessage(JSON.parse(line) as Record<string, unknown>);
    }
  }

  private onMessage(msg: Record<string, unknown>): void {
    if ('QMP' in msg && this.onGreeting) {
      this.onGreeting(msg);
      this.onGreeting = undefined;
    } else if ('event' in msg) {
      this.backlog.push(msg as unknown as QmpEvent);
      for (const w of [...this.waiters]) w();
    } else {
      const p = typeof msg['id'] === 'number' ? this.pending.get(msg['id']) : undefined;
      if (!p) return;
      this.pending.delete(msg['id'] as number);
      if ('error' in msg) {
        const e = msg['error'] as { class: QmpErrorClass; desc: string };
        p.reject(new QmpError(e.class, e.desc));
      } else {
        p.resolve(msg['return']);
      }
    }
  }

  private onClose(): void {
    this.closed = true;
    const err = this.closeError ?? new Error('QMP connection closed');
    this.onGreetingLost?.(new Error(this.closeError ? `no QMP greeting: ${this.closeError.message}` : 'the connection was closed before the QMP greeting'));
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const w of [...this.waiters]) w();
  }

  /** Runs a command; resolves to its `return`, rejects with a QmpError carrying QEMU's class and desc. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closed) return Promise.reject(new Error('QMP connection closed'));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  /** The events received and not yet consumed, in order; they are consumed. */
  takeEvents(): QmpEvent[] {
    return this.backlog.splice(0);
  }

  /** Every event from now on (and those received but not yet consumed), in order. */
  async *events(): AsyncGenerator<QmpEvent> {
    for (;;) {
      const e = this.backlog.shift();
      if (e) {
        yield e;
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((r) => {
        const w = () => {
          this.waiters.delete(w);
          r();
        };
        this.waiters.add(w);
      });
    }
  }

  /** The first (not yet consumed) event with this name that satisfies the predicate; consumed events before it are kept. */
  async waitForEvent(name: string, predicate: (e: QmpEvent) => boolean = () => true, timeoutMs = 10_000): Promise<QmpEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.backlog.findIndex((e) => e.event === name && predicate(e));
      if (i >= 0) return this.backlog.splice(i, 1)[0]!;
      if (this.closed) throw new Error(`QMP connection closed while waiting for ${name}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for event ${name}`);
      await new Promise<void>((r) => {
        const w = () => {
          this.waiters.delete(w);
          clearTimeout(t);
          r();
        };
        const t = setTimeout(w, left);
        this.waiters.add(w);
      });
    }
  }

  /** Closes the connection. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    await new Promise<void>((r) => {
      this.socket.once('close', () => r());
      this.socket.end();
      this.socket.destroySoon();
    });
  }
}

import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventHub, type WaitOptions, withStack } from './client-events.js';
import { QmpError, type QmpErrorClass } from './error.js';
import type { CallOptions, ExecuteRest, QmpCommandName, QmpEvent, QmpReturn, UnknownCommand, UntypedQmpEvent } from './typed.js';

export type { QmpEvent, WaitOptions };

// Node 20 before 20.4 (and some bundlers' targets) lack it; Node's own classes use this registered symbol.
(Symbol as { asyncDispose?: symbol }).asyncDispose ??= Symbol.for('nodejs.asyncDispose');

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

export interface ConnectOptions {
  /** Send `qmp_capabilities` after the greeting (default true). */
  negotiate?: boolean;
  /** How long to wait for the greeting once connected (default 10 s). */
  timeoutMs?: number;
  /**
   * Keep trying for up to this many ms while the socket does not exist or
   * refuses connections — a daemon just spawned that has not listened yet.
   * Default 0: one attempt.
   */
  deadlineMs?: number;
  /** Every command's timeout unless the call gives its own (default: none). */
  commandTimeoutMs?: number;
}

/** Errors that mean "nobody listens there yet". */
const NOT_YET = new Set(['ENOENT', 'ECONNREFUSED', 'EAGAIN']);

function connectOnce(path: string): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const s = connect(path);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

async function connectRetrying(path: string, deadlineMs: number): Promise<Socket> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    try {
      return await connectOnce(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (!NOT_YET.has(code) || Date.now() >= until) {
        if (deadlineMs > 0 && NOT_YET.has(code)) (err as Error).message = `no QMP server on ${path} within ${deadlineMs} ms: ${(err as Error).message}`;
        throw err;
      }
      await sleep(Math.min(20, Math.max(1, until - Date.now())));
    }
  }
}

/**
 * A QMP client for users' tests (and ours): connects, negotiates
 * capabilities, and runs commands with ids so replies are matched even
 * when events interleave. Works against blockemu and qemu-storage-daemon.
 *
 * `execute` is typed by command name from blockemu's schema (arguments
 * checked, return typed); a name the schema does not know (a command only
 * qemu-storage-daemon has) takes any arguments, as does a call with an
 * explicit type argument, `execute<T>(name, args)` — the escape hatch.
 */
export class QmpClient {
  greeting: unknown;
  private buf = '';
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly hub = new EventHub();
  private closed = false;
  private closeError: Error | undefined;
  private commandTimeoutMs: number | undefined;

  private constructor(private readonly socket: Socket) {}

  /**
   * Connects to a monitor socket and completes `qmp_capabilities` (unless
   * `negotiate: false`). A server that accepts but does not greet within
   * `timeoutMs` (qemu-storage-daemon while another client holds its
   * monitor), or hangs up first, fails the call; the socket is closed then.
   */
  static async connect(path: string, opts: ConnectOptions = {}): Promise<QmpClient> {
    const socket = await connectRetrying(path, opts.deadlineMs ?? 0);
    const client = new QmpClient(socket);
    client.commandTimeoutMs = opts.commandTimeoutMs;
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
      this.hub.push(msg as unknown as UntypedQmpEvent);
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
    this.hub.close();
  }

  /**
   * Runs a command; resolves to its `return`, rejects with a QmpError
   * carrying QEMU's class and desc and naming the command. Every failure
   * (QMP error, timeout, lost connection) has the stack of this call.
   */
  execute<K extends QmpCommandName>(command: K, ...rest: ExecuteRest<K>): Promise<QmpReturn<K>>;
  execute<T = unknown, N extends string = string>(command: UnknownCommand<N>, args?: Record<string, unknown>, opts?: CallOptions): Promise<T>;
  execute(command: string, args?: Record<string, unknown>, opts: CallOptions = {}): Promise<unknown> {
    const site = new Error();
    const fail = (err: Error) => {
      if (err instanceof QmpError) return withStack(new QmpError(err.qmpClass, err.desc, command), site);
      return withStack(new Error(`${command}: ${err.message}`, { cause: err }), site);
    };
    if (this.closed) return Promise.reject(fail(new Error('QMP connection closed')));
    const id = this.nextId++;
    const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs;
    return new Promise((resolve, reject) => {
      const timer =
        timeoutMs === undefined ? undefined : (
          setTimeout(() => {
            this.pending.delete(id);
            reject(fail(new Error(`no reply within ${timeoutMs} ms`)));
          }, timeoutMs)
        );
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(fail(e));
        },
      });
      this.socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  /** The events received that no waiter took, in order; they are consumed. */
  takeEvents(): UntypedQmpEvent[] {
    return this.hub.take();
  }

  /**
   * The events received that no waiter took (not consumed), then every
   * event from now on, in order, until the connection closes or the loop
   * breaks. Each iterator sees every event; iterators take nothing from
   * waiters nor from each other.
   */
  events(): AsyncIterableIterator<UntypedQmpEvent> {
    return this.hub.iterate();
  }

  /**
   * The first event with this name that satisfies the predicate: one
   * received earlier that no waiter took (it is consumed), else the next
   * to arrive. Waiters waiting together each get every event they match.
   */
  waitForEvent<N extends string>(name: N, predicate: (e: QmpEvent<N>) => boolean = () => true, timeoutMs = 10_000): Promise<QmpEvent<N>> {
    return this.hub.waitFor([name], predicate, { timeoutMs }, new Error());
  }

  /**
   * The first event with one of these names that satisfies the predicate
   * (as waitForEvent), typed as the union of those events: e.g.
   * `waitForAny(['BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED'], (e) => e.data.device === 'j')`.
   */
  waitForAny<const N extends string>(names: readonly N[], predicate: (e: QmpEvent<N>) => boolean = () => true, opts: WaitOptions = {}): Promise<QmpEvent<N>> {
    return this.hub.waitFor(names, predicate, opts, new Error());
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

  /** `await using c = await QmpClient.connect(…)` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

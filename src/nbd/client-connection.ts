import { strerror } from '../image/errno.js';
import { BlockError } from '../image/errors.js';
import { connectServer, type ServerAddress } from './client-connect.js';
import { ClientHandshake, type ExportInfo } from './client-handshake.js';
import { ChannelError, ClientSession, type StatusExtent } from './client-session.js';
import { SocketReader } from './socket-reader.js';

/** What a connection is made with (BDRVNBDState's connection parameters). */
export interface ConnectionOptions {
  address: ServerAddress;
  exportName: string;
  /** The meta context to select instead of base:allocation (x-dirty-bitmap). */
  metaContext?: string;
  /** Seconds requests wait for a lost connection to come back before they fail (reconnect-delay). */
  reconnectDelay: number;
  /** Seconds the first connection is retried for (open-timeout); 0: one attempt. */
  openTimeout: number;
  /**
   * Checks what the server offers on every connection (nbd_handle_updated_info):
   * throwing refuses it, after a courtesy NBD_CMD_DISC.
   */
  accept(info: ExportInfo): void;
}

/**
 * block/nbd.c's NBDClientState. A lost connection (end of file, a socket
 * error) is made again in the background; while that lasts, requests wait
 * (connecting-wait, for reconnect-delay seconds) or fail at once with EIO
 * (connecting-nowait). A protocol error, or closing, ends it for good.
 */
type State = 'connected' | 'connecting-wait' | 'connecting-nowait' | 'quit';
type Event = 'lost' | 'lost-with-delay' | 'protocol-error' | 'connected' | 'delay-expired' | 'close';

const TRANSITIONS: Record<State, Partial<Record<Event, State>>> = {
  connected: { lost: 'connecting-nowait', 'lost-with-delay': 'connecting-wait', 'protocol-error': 'quit', close: 'quit' },
  'connecting-wait': { connected: 'connected', 'delay-expired': 'connecting-nowait', close: 'quit' },
  'connecting-nowait': { connected: 'connected', close: 'quit' },
  quit: {},
};

/** Seconds between attempts: QEMU's connect thread sleeps 1, 2, 4 … up to 16 s. */
const FIRST_BACKOFF = 1;
const MAX_BACKOFF = 16;

const eio = () => new BlockError('IO', strerror('EIO'), { errno: 'EIO' });

/** One connect-and-handshake attempt; the socket is closed again when the handshake or the check fails. */
async function establish(o: ConnectionOptions): Promise<ClientSession> {
  const socket = await connectServer(o.address);
  const reader = new SocketReader(socket);
  try {
    const info = await new ClientHandshake(socket, reader).run({ exportName: o.exportName, metaContext: o.metaContext });
    const session = new ClientSession(socket, reader, info);
    try {
      o.accept(info);
    } catch (err) {
      await session.disconnect();
      throw err;
    }
    return session;
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

/**
 * The client's connection to one export, kept alive across losses as
 * QEMU keeps it (block/nbd.c with nbd/client-connection.c).
 */
export class ClientConnection {
  private state: State = 'connected';
  /** The state now (a method, so checks after an event are not narrowed away by the compiler). */
  private now(): State {
    return this.state;
  }
  private changed: Array<() => void> = [];
  private delayTimer: NodeJS.Timeout | undefined;
  private backoffTimer: { timer: NodeJS.Timeout; wake: () => void } | undefined;

  private constructor(
    private readonly o: ConnectionOptions,
    private session: ClientSession,
  ) {
    this.watch(session);
  }

  /**
   * The first connection (nbd_open): one attempt, or with open-timeout
   * attempts until it passes; the error is the last attempt's, or QEMU's
   * words when the time ran out before any attempt ended.
   */
  static async open(o: ConnectionOptions): Promise<ClientConnection> {
    if (o.openTimeout <= 0) return new ClientConnection(o, await establish(o));
    const deadline = Date.now() + o.openTimeout * 1000;
    let last: unknown;
    for (let backoff = FIRST_BACKOFF; ; backoff = Math.min(backoff * 2, MAX_BACKOFF)) {
      const left = deadline - Date.now();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), Math.max(left, 0))));
      const attempt = establish(o).then(
        (s) => ({ s }),
        (err: unknown) => ({ err }),
      );
      const r = await Promise.race([attempt, timeout]);
      clearTimeout(timer);
      if (r === 'timeout') {
        // The attempt still runs: a connection it makes after all is closed again.
        void attempt.then((a) => ('s' in a ? a.s.disconnect() : undefined));
        throw last ?? new BlockError('IO', 'Connection attempt cancelled by timeout', { errno: 'ECONNREFUSED' });
      }
      if ('s' in r) return new ClientConnection(o, r.s);
      last = r.err;
      if (Date.now() + backoff * 1000 >= deadline) {
        await new Promise((res) => setTimeout(res, Math.max(deadline - Date.now(), 0)));
        throw last;
      }
      await new Promise((res) => setTimeout(res, backoff * 1000));
    }
  }

  /** What the server offers on the connection in use. */
  get info(): ExportInfo {
    return this.session.info;
  }

  /**
   * One request, as nbd_co_request: while the connection is being made
   * again within reconnect-delay, the request waits and is sent again
   * once it is back; otherwise a lost connection fails it with EIO.
   */
  async request(cmd: number, flags: number, offset: number, length: number, data?: Uint8Array, into?: Uint8Array): Promise<{ data?: Buffer; extent?: StatusExtent }> {
    for (;;) {
      if (this.state === 'connecting-wait') {
        await new Promise<void>((r) => this.changed.push(r));
        continue;
      }
      if (this.state !== 'connected') throw eio();
      const s = this.session;
      try {
        return await s.request(cmd, flags, offset, length, data, into);
      } catch (err) {
        if (!(err instanceof ChannelError)) throw err;
        this.lost(s, err);
        if (this.now() !== 'connecting-wait') throw new BlockError('IO', strerror(err.errno!), { errno: err.errno, cause: err });
      }
    }
  }

  /** NBD_CMD_DISC on the connection in use and no attempts after (nbd_client_close). Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'quit' && !this.session.alive) return;
    this.fire('close');
    await this.session.disconnect();
  }

  private fire(event: Event): void {
    const next = TRANSITIONS[this.state][event];
    if (!next) return;
    this.state = next;
    if (next !== 'connecting-wait') clearTimeout(this.delayTimer);
    if (next === 'quit' && this.backoffTimer) {
      clearTimeout(this.backoffTimer.timer);
      this.backoffTimer.wake();
    }
    for (const w of this.changed.splice(0)) w();
  }

  /** A loss is noticed at once, whether or not a request is in flight. */
  private watch(s: ClientSession): void {
    void s.whenDead.then((err) => this.lost(s, err));
  }

  /** nbd_channel_error: only the session in use counts (a request may report a loss already handled). */
  private lost(s: ClientSession, err: ChannelError): void {
    if (s !== this.session || this.state !== 'connected') return;
    if (err.protocol) {
      this.fire('protocol-error');
      s.destroy();
      return;
    }
    this.fire(this.o.reconnectDelay > 0 ? 'lost-with-delay' : 'lost');
    if (this.now() === 'connecting-wait') this.delayTimer = setTimeout(() => this.fire('delay-expired'), this.o.reconnectDelay * 1000);
    void this.reconnect();
  }

  /** Attempts until one succeeds or the connection is closed: the first at once, then after QEMU's growing sleeps. */
  private async reconnect(): Promise<void> {
    for (let backoff = FIRST_BACKOFF; this.state !== 'quit'; backoff = Math.min(backoff * 2, MAX_BACKOFF)) {
      try {
        const s = await establish(this.o);
        if (this.now() === 'quit') {
          await s.disconnect();
          return;
        }
        this.session = s;
        this.watch(s);
        this.fire('connected');
        return;
      } catch {
        await new Promise<void>((wake) => (this.backoffTimer = { timer: setTimeout(wake, backoff * 1000), wake }));
        this.backoffTimer = undefined;
      }
    }
  }
}

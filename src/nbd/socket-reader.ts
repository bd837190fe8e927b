import type { Socket } from 'node:net';

/** The peer closed the connection (or it failed) before the bytes asked for arrived. */
export class ConnectionClosed extends Error {
  constructor(readonly partial: boolean) {
    super(partial ? 'Unexpected end-of-file before all bytes were read' : 'connection closed');
  }
}

/** Bytes buffered ahead of what is asked for, past which the socket stops reading (a client that floods us waits). */
const HIGH_WATER = 4 << 20;

/**
 * Exact-length reads from a socket: `read(n)` resolves with the next n
 * bytes once they have all arrived. One read at a time (the protocol is a
 * sequence of fields); reading is paused while enough is buffered, so a
 * client sending faster than requests are served cannot grow memory.
 */
export class SocketReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private want: { n: number; into?: Buffer; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private ended = false;

  constructor(private readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.buffered += d.length;
      this.serve();
    });
    const end = () => {
      this.ended = true;
      this.serve();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  /** The next `n` bytes. */
  read(n: number): Promise<Buffer> {
    if (this.want) return Promise.reject(new Error('SocketReader: one read at a time'));
    return new Promise((resolve, reject) => {
      this.want = { n, resolve, reject };
      this.serve();
    });
  }

  /** The next `buf.length` bytes, copied into `buf` (a pooled buffer). */
  readInto(buf: Buffer): Promise<Buffer> {
    if (this.want) return Promise.reject(new Error('SocketReader: one read at a time'));
    return new Promise((resolve, reject) => {
      this.want = { n: buf.length, into: buf, resolve, reject };
      this.serve();
    });
  }

  /** Reads and forgets `n` bytes (an option's payload we do not use), without holding them all. */
  async skip(n: number): Promise<void> {
    while (n > 0) {
      const step = Math.min(n, 1 << 20);
      await this.read(step);
      n -= step;
    }
  }

  /** Whether the peer has gone with nothing left unread. */
  get atEnd(): boolean {
    return this.ended && this.buffered === 0;
  }

  private serve(): void {
    const w = this.want;
    if (w && this.buffered >= w.n) {
      this.want = undefined;
      w.resolve(this.take(w.n, w.into));
    } else if (w && this.ended) {
      this.want = undefined;
      w.reject(new ConnectionClosed(this.buffered > 0));
      return;
    }
    // A read larger than the mark (a 32 MiB write) must still be able to arrive whole.
    const limit = Math.max(HIGH_WATER, this.want?.n ?? 0);
    if (this.buffered >= limit) this.socket.pause();
    else if (this.socket.isPaused()) this.socket.resume();
  }

  private take(n: number, into?: Buffer): Buffer {
    this.buffered -= n;
    const first = this.chunks[0];
    if (!into && first && first.length === n) {
      this.chunks.shift();
      return first;
    }
    if (!into && first && first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = into ?? Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - at);
      c.copy(out, at, 0, k);
      at += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}

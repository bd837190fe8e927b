import { connect, type Socket } from 'node:net';
import { BlockError } from '../image/errors.js';
import { strerrorOf } from '../image/errno.js';

/**
 * The qtest protocol (softmmu/qtest.c) for a machine with no guest: every
 * command line is answered `OK`; `clock_step [ns]` and `clock_set ns` move
 * the qtest virtual clock and answer its new value, as QEMU does. Memory
 * and I/O port accesses have nothing behind them. blockemu connects to the
 * harness's socket (QEMU's Python harness listens, QEMU connects).
 */
export class QtestConnection {
  private clockNs = 0n;
  private buffered = '';

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.receive(chunk));
    socket.on('error', () => undefined);
  }

  static async connect(path: string): Promise<QtestConnection> {
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', (err) => reject(new BlockError('INVALID_ARGUMENT', `Failed to connect to '${path}': ${strerrorOf(err)}`, { cause: err })));
    });
    return new QtestConnection(socket);
  }

  private receive(chunk: string): void {
    this.buffered += chunk;
    for (let nl = this.buffered.indexOf('\n'); nl >= 0; nl = this.buffered.indexOf('\n')) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      this.socket.write(`${this.answer(line.trim().split(/\s+/))}\n`);
    }
  }

  private answer(words: string[]): string {
    const [cmd, arg] = words;
    if (cmd === 'clock_step') {
      // Without a step, QEMU runs to the next timer; there are none.
      if (arg !== undefined) this.clockNs += parseNs(arg);
      return `OK ${this.clockNs}`;
    }
    if (cmd === 'clock_set' && arg !== undefined) {
      const ns = parseNs(arg);
      if (ns > this.clockNs) this.clockNs = ns;
      return `OK ${this.clockNs}`;
    }
    return 'OK';
  }

  close(): void {
    this.socket.destroy();
  }
}

function parseNs(text: string): bigint {
  try {
    return BigInt(text);
  } catch {
    return 0n;
  }
}

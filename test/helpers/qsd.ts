import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Connects to a qemu-storage-daemon monitor socket, waiting (up to about 5 s) for the daemon to create it. */
export async function connectToQsd(path: string): Promise<Socket> {
  let sock: Socket | undefined;
  for (let i = 0; i < 200 && !sock; i++) {
    sock = await new Promise<Socket | undefined>((resolve) => {
      const s = connect(path);
      s.once('connect', () => resolve(s));
      s.once('error', () => resolve(undefined));
    });
    if (!sock) await sleep(25);
  }
  if (!sock) throw new Error('qemu-storage-daemon did not open its QMP socket');
  return sock;
}

/**
 * A real qemu-storage-daemon with one QMP monitor, for recording what QEMU
 * answers. `send` writes raw text and collects the reply lines that arrive
 * (each parsed); `exchange` sends one JSON request and waits for its reply.
 */
export class QsdSession {
  private buf = '';
  private readonly lines: unknown[] = [];
  /** The same messages as sent, without the line end. */
  private readonly raw: string[] = [];
  private wake: (() => void) | undefined;

  private constructor(
    private readonly proc: ChildProcess,
    private readonly sock: Socket,
    private readonly dir: string,
    readonly greeting: unknown,
  ) {}

  static async start(extraArgs: string[] = []): Promise<QsdSession> {
    const dir = await mkdtemp(join(tmpdir(), 'blockemu-qsd-'));
    const path = join(dir, 'qmp.sock');
    const proc = spawn('qemu-storage-daemon', ['--chardev', `socket,id=m,path=${path},server=on,wait=off`, '--monitor', 'chardev=m', ...extraArgs], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const sock = await connectToQsd(path);
    const pending: QsdSession = new QsdSession(proc, sock, dir, undefined);
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => pending.onData(d));
    const greeting = await pending.next(5000);
    return Object.assign(pending, { greeting });
  }

  private onData(d: string): void {
    this.buf += d;
    for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (line) {
        this.lines.push(JSON.parse(line));
        this.raw.push(line);
      }
    }
    this.wake?.();
  }

  /** The next message from the daemon (events included). */
  async next(timeoutMs = 5000): Promise<unknown> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (Date.now() > deadline) throw new Error('no reply from qemu-storage-daemon');
      await Promise.race([new Promise<void>((r) => (this.wake = r)), sleep(50)]);
    }
    this.raw.shift();
    return this.lines.shift();
  }

  /** Sends one request; resolves to the reply exactly as the daemon wrote it (without "\r\n"). */
  async exchangeRaw(request: unknown): Promise<string> {
    return this.exchangeText(JSON.stringify(request));
  }

  /** Sends one line of raw text (which JSON.stringify could not produce, like 1.0); resolves to the reply as written. */
  async exchangeText(text: string): Promise<string> {
    this.sock.write(`${text}\n`);
    const deadline = Date.now() + 5000;
    while (this.raw.length === 0) {
      if (Date.now() > deadline) throw new Error('no reply from qemu-storage-daemon');
      await Promise.race([new Promise<void>((r) => (this.wake = r)), sleep(50)]);
    }
    this.lines.shift();
    return this.raw.shift()!;
  }

  /** Sends raw text; returns every message that arrives within `settleMs`. */
  async send(text: string | Uint8Array, settleMs = 150): Promise<unknown[]> {
    this.sock.write(text);
    await sleep(settleMs);
    this.raw.splice(0);
    return this.lines.splice(0);
  }

  async exchange(request: unknown): Promise<unknown> {
    this.sock.write(`${JSON.stringify(request)}\n`);
    return this.next();
  }

  async close(): Promise<void> {
    this.sock.destroy();
    this.proc.kill('SIGTERM');
    await new Promise((r) => this.proc.once('exit', r));
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * A QMP session in raw lines with either daemon (qemu-storage-daemon or
 * blockemu, the same command line): requests go out as written and
 * replies come back as written, so integers past 2^53 are compared digit
 * for digit (JSON.parse would round them). Events are kept apart, raw.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Daemon } from './bitmap-daemon.js';
import { BLOCKEMU } from './qemu.js';
import { connectToQsd } from './qsd.js';

export class RawQmp {
  private buf = '';
  private readonly lines: string[] = [];
  /** Events as written (timestamps included), in arrival order. */
  readonly events: string[] = [];
  private wake: (() => void) | undefined;

  private constructor(
    private readonly proc: ChildProcess,
    private readonly sock: import('node:net').Socket,
  ) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, nl).replace(/\r$/, '');
        this.buf = this.buf.slice(nl + 1);
        if (line.startsWith('{"timestamp"')) this.events.push(line);
        else this.lines.push(line);
      }
      this.wake?.();
    });
  }

  /** Starts `which` with `args` and a monitor socket in `dir`; the session has negotiated capabilities. */
  static async start(which: Daemon, dir: string, args: string[] = []): Promise<RawQmp> {
    const path = join(dir, `${which}-raw.sock`);
    const monitor = ['--chardev', `socket,id=m,path=${path},server=on,wait=off`, '--monitor', 'chardev=m'];
    const proc =
      which === 'qsd'
        ? spawn('qemu-storage-daemon', [...args, ...monitor], { stdio: 'ignore' })
        : spawn(process.execPath, [BLOCKEMU, 'daemon', ...args, ...monitor], { stdio: 'ignore' });
    const s = new RawQmp(proc, await connectToQsd(path));
    await s.reply(); // greeting
    await s.command('{"execute": "qmp_capabilities"}');
    return s;
  }

  private async reply(timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (Date.now() > deadline) throw new Error('no reply');
      await Promise.race([new Promise<void>((r) => (this.wake = r)), sleep(50)]);
    }
    return this.lines.shift()!;
  }

  /** Sends one request line; the reply line as the daemon wrote it. */
  async command(text: string): Promise<string> {
    this.sock.write(`${text}\n`);
    return this.reply();
  }

  /** Waits until an event line containing `fragment` has come. */
  async waitForEvent(fragment: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.events.some((e) => e.includes(fragment))) {
      if (Date.now() > deadline) throw new Error(`no event ${fragment}`);
      await Promise.race([new Promise<void>((r) => (this.wake = r)), sleep(50)]);
    }
  }

  async quit(): Promise<void> {
    this.sock.write('{"execute": "quit"}\n');
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    if (this.proc.exitCode === null && this.proc.signalCode === null) await new Promise((r) => this.proc.once('exit', r));
    clearTimeout(t);
    this.sock.destroy();
  }
}

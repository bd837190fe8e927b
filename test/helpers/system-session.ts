/**
 * A qemu-system-x86_64 or `blockemu system` process driven over QMP step by
 * step, for tests where two machines talk to each other (a migration) and
 * the test looks at the files between commands: replies and events kept
 * in the order they came, timestamps removed.
 */
import type { ChildProcess } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { normalise, spawnSystem, type SystemProg } from './system.js';

export class SystemSession {
  /** Every event line, in order. */
  readonly events: string[] = [];
  stderr = '';
  private replies: string[] = [];
  private buf = '';
  private wake: (() => void) | undefined;
  private ended = false;

  private constructor(
    private readonly child: ChildProcess,
    private readonly sock: Socket,
    readonly exited: Promise<number | null>,
  ) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        const line = normalise(this.buf.slice(0, nl).replace(/\r$/, ''));
        this.buf = this.buf.slice(nl + 1);
        if (line.startsWith('{"event"')) this.events.push(line);
        else if (line.startsWith('{"return"') || line.startsWith('{"error"')) this.replies.push(line);
      }
      this.wake?.();
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      this.ended = true;
      this.wake?.();
    });
  }

  /** Starts `prog` with a client-mode QMP monitor on a socket named after `name` in `dir`, capabilities negotiated. */
  static async start(prog: SystemProg, dir: string, name: string, args: readonly string[]): Promise<SystemSession> {
    const path = join(dir, `${prog}-${name}-mon.sock`);
    const server = createServer();
    await new Promise<void>((r) => server.listen(path, r));
    const child = spawnSystem(prog, [...args, '-chardev', `socket,id=mon,path=${path}`, '-mon', 'chardev=mon,mode=control']);
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    child.stdout!.resume();
    const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    const sock = await new Promise<Socket>((resolve, reject) => {
      server.once('connection', resolve);
      void exited.then((code) => reject(new Error(`${prog} exited (${code}) before connecting: ${stderr}`)));
    });
    server.close();
    const s = new SystemSession(child, sock, exited);
    child.stderr!.on('data', (d) => (s.stderr += d));
    s.stderr = stderr;
    await s.command('{"execute": "qmp_capabilities"}');
    return s;
  }

  private async until(done: () => boolean): Promise<void> {
    while (!done()) {
      if (this.ended) throw new Error(`the monitor closed; stderr: ${this.stderr}`);
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  /** Sends one request (the greeting counts as the first reply) and resolves to its reply. */
  async command(text: string): Promise<string> {
    const n = this.replies.length + 1;
    this.sock.write(`${text}\n`);
    // The greeting is no reply: it starts with {"QMP".
    await this.until(() => this.replies.length >= n);
    return this.replies[n - 1]!;
  }

  /** Waits until `count` events contain `fragment`. */
  async waitForEvents(fragment: string, count = 1): Promise<void> {
    await this.until(() => this.events.filter((e) => e.includes(fragment)).length >= count);
  }

  /** quit, then the exit code. */
  async quit(): Promise<number | null> {
    this.sock.write('{"execute": "quit"}\n');
    const code = await this.exited;
    return code;
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

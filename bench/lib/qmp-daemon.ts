/**
 * What the daemon benches share: a minimal line-oriented QMP client (one
 * request in flight; events set aside, not parsed into the timing path),
 * and starting either daemon on the same command line.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export const BLOCKEMU = fileURLToPath(new URL('../../bin/blockemu.js', import.meta.url));

export function hasQsd(): boolean {
  return spawnSync('sh', ['-c', 'command -v qemu-storage-daemon'], { stdio: 'ignore' }).status === 0;
}

/** Connects to a daemon's monitor socket, retrying every `pollMs` while the daemon starts (about 10 s in all). */
export async function connectWithRetry(path: string, pollMs = 25): Promise<Socket> {
  for (let i = 0; ; i++) {
    try {
      return await new Promise<Socket>((res, rej) => {
        const c = connect(path);
        c.once('connect', () => res(c));
        c.once('error', rej);
      });
    } catch (err) {
      if (i * pollMs > 10_000) throw err;
      await sleep(pollMs);
    }
  }
}

export class LineClient {
  private buf = '';
  private waiter: ((line: string) => void) | undefined;
  private readonly lines: string[] = [];
  /** Event lines received, in order. */
  readonly events: string[] = [];
  private eventWaiter: (() => void) | undefined;

  private constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        if (line.includes('"event": ') && line.includes('"timestamp": ')) {
          this.events.push(line);
          this.eventWaiter?.();
          continue;
        }
        const w = this.waiter;
        if (w) {
          this.waiter = undefined;
          w(line);
        } else this.lines.push(line);
      }
    });
  }

  static async open(path: string): Promise<LineClient> {
    const client = new LineClient(await connectWithRetry(path));
    await client.next();
    await client.call('{"execute":"qmp_capabilities"}');
    return client;
  }

  next(): Promise<string> {
    const l = this.lines.shift();
    return l !== undefined ? Promise.resolve(l) : new Promise((r) => (this.waiter = r));
  }

  /** Sends one request; resolves to its reply line (events are kept aside). */
  async call(request: string): Promise<string> {
    this.sock.write(`${request}\n`);
    return this.next();
  }

  /** Waits for an event line containing every fragment. */
  async waitEvent(...fragments: string[]): Promise<void> {
    for (;;) {
      const i = this.events.findIndex((l) => fragments.every((f) => l.includes(f)));
      if (i >= 0) {
        this.events.splice(i, 1);
        return;
      }
      await new Promise<void>((r) => (this.eventWaiter = r));
    }
  }

  close(): void {
    this.sock.destroy();
  }
}

export interface RunningDaemon {
  proc: ChildProcess;
  client: LineClient;
  /** Peak resident set size so far (VmHWM), in MiB. */
  peakRssMiB(): number;
  stop(): Promise<void>;
}

/** Starts blockemu's daemon or qemu-storage-daemon with `args` plus one monitor on `sock`. */
export async function startDaemon(which: 'blockemu' | 'qemu', args: string[], sock: string): Promise<RunningDaemon> {
  const all = [...args, '--chardev', `socket,id=m,path=${sock},server=on,wait=off`, '--monitor', 'chardev=m'];
  const proc = which === 'blockemu' ? spawn(process.execPath, [BLOCKEMU, 'daemon', ...all], { stdio: ['ignore', 'ignore', 'inherit'] }) : spawn('qemu-storage-daemon', all, { stdio: 'ignore' }); // qsd warns about null-co targets' cluster size on stderr
  const client = await LineClient.open(sock);
  return {
    proc,
    client,
    peakRssMiB: () => {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'));
      return m ? Number(m[1]) / 1024 : NaN;
    },
    async stop() {
      client.close();
      proc.kill('SIGTERM');
      if (proc.exitCode === null) await new Promise((r) => proc.once('exit', r));
    },
  };
}

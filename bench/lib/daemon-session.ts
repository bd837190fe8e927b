/**
 * What the daemon benches (backup, mirror) share: a QMP connection that
 * keeps events apart from replies, a daemon (blockemu's or
 * qemu-storage-daemon) started on one image with the same command line,
 * its peak RSS, and the source images: random raw data, and a qcow2 with
 * every other 64 KiB cluster allocated.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { open, readFile, unlink, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchContext } from './context.js';
import { connectWithRetry } from './qmp-daemon.js';
import { qemuImg } from './qemu.js';
import { MiB } from './stats.js';

export const BLOCKEMU = fileURLToPath(new URL('../../bin/blockemu.js', import.meta.url));

/** A QMP connection that keeps events apart from replies. */
export class Qmp {
  private buf = '';
  private readonly replies: unknown[] = [];
  private readonly events: { event: string; data: Record<string, unknown> }[] = [];
  private wake: (() => void) | undefined;
  private constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        const msg = JSON.parse(this.buf.slice(0, nl)) as Record<string, unknown>;
        this.buf = this.buf.slice(nl + 1);
        if ('event' in msg) this.events.push(msg as never);
        else if (!('QMP' in msg)) this.replies.push(msg);
        this.wake?.();
      }
    });
  }
  /** Connects (polling every `pollMs` while the daemon starts) and negotiates. */
  static async open(path: string, pollMs?: number): Promise<Qmp> {
    const q = new Qmp(await connectWithRetry(path, pollMs));
    await q.call('qmp_capabilities');
    return q;
  }
  private async until<T>(take: () => T | undefined): Promise<T> {
    for (;;) {
      const v = take();
      if (v !== undefined) return v;
      await new Promise<void>((r) => (this.wake = r));
    }
  }
  async call(execute: string, args?: Record<string, unknown>): Promise<unknown> {
    this.sock.write(`${JSON.stringify(args ? { execute, arguments: args } : { execute })}\n`);
    const reply = (await this.until(() => this.replies.shift())) as { return?: unknown; error?: { desc: string } };
    if (reply.error) throw new Error(`${execute}: ${reply.error.desc}`);
    return reply.return;
  }
  event(name: string): Promise<Record<string, unknown>> {
    return this.until(() => {
      const i = this.events.findIndex((e) => e.event === name);
      return i < 0 ? undefined : this.events.splice(i, 1)[0]!.data;
    });
  }
  close(): void {
    this.sock.destroy();
  }
  /** Resolves when the daemon closes the connection (after `quit`). */
  closed(): Promise<void> {
    if (this.sock.closed) return Promise.resolve();
    return new Promise((r) => this.sock.once('close', () => r()));
  }
}

export interface Daemon {
  name: 'blockemu' | 'qsd';
  cmd: string;
  pre: string[];
}

export async function vmHwmMiB(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /VmHWM:\s+(\d+) kB/.exec(s);
  return m ? Number(m[1]) / 1024 : NaN;
}

/**
 * CPU seconds (user + system, all threads) a process has used so far: on
 * a loaded machine the time a run takes varies by half, what it costs
 * much less.
 */
export async function cpuSeconds(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

export async function withDaemon<T>(d: Daemon, dir: string, image: string, format: string, fn: (q: Qmp, proc: ChildProcess) => Promise<T>): Promise<T> {
  const sock = join(dir, `${d.name}.sock`);
  const node = JSON.stringify({ driver: format, 'node-name': 'disk0', file: { driver: 'file', filename: image } });
  const args = [...d.pre, '--blockdev', node, '--chardev', `socket,id=m,path=${sock},server=on,wait=off`, '--monitor', 'chardev=m'];
  const proc = spawn(d.cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    const q = await Qmp.open(sock);
    try {
      return await fn(q, proc);
    } finally {
      q.close();
    }
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    await unlink(sock).catch(() => undefined);
  }
}

export function syncDisks(): void {
  spawnSync('sync', { stdio: 'inherit' });
}

export async function makeImages(dir: string, size: number): Promise<{ raw: string; qcow2: string }> {
  const raw = join(dir, 'src.raw');
  const qcow2 = join(dir, 'src.qcow2');
  const buf = Buffer.alloc(MiB);
  const fh = await open(raw, 'w');
  for (let off = 0; off < size; off += MiB) await fh.write(randomFillSync(buf), 0, MiB, off);
  await fh.close();
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', qcow2, String(size)]);
  // Every other 64 KiB cluster, written through qemu-io in one process: half the clusters allocated.
  const pattern = join(dir, 'cmds');
  const lines: string[] = [];
  for (let off = 0; off < size; off += 2 * 65536) lines.push(`write -P ${(off >> 17) % 251} ${off} 64k`);
  await writeFile(pattern, lines.join('\n') + '\n');
  await new Promise<void>((res, rej) => {
    const p = spawn('sh', ['-c', `qemu-io -f qcow2 ${qcow2} < ${pattern} > /dev/null`], { stdio: 'inherit' });
    p.once('exit', (c) => (c === 0 ? res() : rej(new Error(`qemu-io exited ${c}`))));
  });
  return { raw, qcow2 };
}

/** The two daemons, blockemu's under `--cpu-prof` when asked. */
export function daemons(ctx: BenchContext): Daemon[] {
  return [
    { name: 'blockemu', cmd: process.execPath, pre: [...(ctx.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${ctx.cpuProfDir}`] : []), BLOCKEMU, 'daemon'] },
    { name: 'qsd', cmd: 'qemu-storage-daemon', pre: [] },
  ];
}

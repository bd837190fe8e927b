import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { type Monitor, StdioStream } from '../connected-monitor.js';
import type { QmpContext } from '../context.js';
import { type SessionOptions, sessionContext } from '../session.js';
import { HmpReadline } from './readline.js';
import { runHmpLine } from './run.js';

/**
 * A human monitor (`-monitor stdio`, `-mon chardev=X` in readline mode):
 * QEMU's greeting, the "(qemu) " prompt, and each line typed run through
 * the HMP command table. Bytes are taken one at a time and none while a
 * command runs (QEMU's HMP reads one byte per turn, and a running command
 * suspends it), so echo and output interleave as QEMU's do. Every "\n" it
 * writes goes out as "\r\n" (monitor_puts). It hears no QMP events.
 */
export class HmpMonitor implements Monitor {
  private readonly readline: HmpReadline;
  private readonly pending: number[] = [];
  private busy = false;
  private suspended = false;
  private closed = false;
  private readonly ctx: QmpContext;

  constructor(
    readonly path: string,
    private readonly stream: Duplex,
    private readonly opts: SessionOptions,
  ) {
    this.ctx = sessionContext(opts, { negotiated: true, oob: false });
    this.readline = new HmpReadline(
      (t) => this.write(t, 'latin1'),
      (line) => void this.run(line),
    );
  }

  /** A started monitor on stdin/stdout or on a connected socket the process inherited (`-chardev socket,fd=N`). */
  static open(path: string, on: 'stdio' | number, opts: SessionOptions): HmpMonitor {
    const stream = on === 'stdio' ? new StdioStream() : new Socket({ fd: on, readable: true, writable: true });
    const mon = new HmpMonitor(path, stream, opts);
    mon.start();
    return mon;
  }

  private tookInput!: () => void;
  readonly firstInput = new Promise<void>((r) => (this.tookInput = r));

  start(): void {
    const v = this.opts.version.qemu;
    this.write(`QEMU ${v.major}.${v.minor}.${v.micro} monitor - type 'help' for more information\n`);
    this.readline.prompt('(qemu) ');
    this.stream.on('data', (chunk: Buffer) => {
      for (const b of chunk) this.pending.push(b);
      this.pump();
      this.tookInput();
    });
    this.stream.on('error', (err) => this.opts.log.debug({ monitor: this.path, err }, 'HMP monitor stream error'));
    this.stream.on('close', () => void this.close());
  }

  private pump(): void {
    while (!this.busy && !this.suspended && !this.closed && this.pending.length > 0) this.readline.feed(this.pending.shift()!);
    if (this.pending.length > 0) this.stream.pause();
    else this.stream.resume();
  }

  private async run(latin1Line: string): Promise<void> {
    this.busy = true;
    const activity = this.opts.activity;
    if (activity) activity.commandsRunning++;
    try {
      const line = Buffer.from(latin1Line, 'latin1').toString('utf8');
      if (this.opts.started) await this.opts.started;
      if (this.ctx.machine) await this.ctx.machine.initialized;
      const freeing = this.ctx.jobs.dismissalsSettled();
      if (freeing) await freeing;
      await runHmpLine({ qmp: this.ctx, out: (t) => this.write(t), suspend: () => (this.suspended = true) }, line);
    } catch (err) {
      this.opts.log.error({ err }, 'HMP command failed');
    } finally {
      if (activity) activity.commandsRunning--;
      this.busy = false;
    }
    if (this.suspended || this.closed) return;
    this.readline.prompt('(qemu) ');
    this.pump();
  }

  private write(text: string, encoding: BufferEncoding = 'utf8'): void {
    if (this.closed) return;
    this.stream.write(Buffer.from(text.replace(/\r?\n/g, '\r\n'), encoding));
  }

  broadcast(): void {
    // QMP events do not reach a human monitor.
  }

  get clientCount(): number {
    return this.closed ? 0 : 1;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stream.destroy();
  }
}

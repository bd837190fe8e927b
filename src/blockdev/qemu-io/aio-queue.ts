import { Output, type OutputChunk } from './command.js';

/**
 * qemu-io's asynchronous requests (aio_read, aio_write): a command issues
 * one and returns at once; the request prints its report from its
 * completion callback, i.e. whenever it settles — while a later command
 * runs, at aio_flush, or at exit, which all drain. Node's event loop plays
 * QEMU's main loop: a request settles while the tool awaits something.
 */
export class AioQueue {
  private readonly pending = new Set<Promise<void>>();

  /** `sink` receives each completion's output as it happens. */
  constructor(
    private readonly errorPrefix: string,
    private readonly sink: (chunks: OutputChunk[]) => void,
  ) {}

  /** Starts `body` without waiting for it; what it prints goes to the sink when it settles. */
  start(body: (out: Output) => Promise<void>): void {
    const out = new Output(this.errorPrefix);
    const p: Promise<void> = body(out).then(
      () => this.sink(out.chunks),
      (err: unknown) => {
        // A completion callback cannot fail the command that issued it; an
        // unexpected error (a bug, not an I/O failure) is still shown.
        out.err(`${this.errorPrefix}${(err as Error).message}\n`);
        this.sink(out.chunks);
      },
    );
    const tracked = p.finally(() => this.pending.delete(tracked));
    this.pending.add(tracked);
  }

  /** Waits until every request issued so far, and any issued meanwhile, has completed (blk_drain_all). */
  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }
}

/** A request over [start, end) in flight, and when it is done. */
interface Range {
  start: number;
  end: number;
  /** Woken when the request is done; made only when someone waits (writes far outnumber prefetches). */
  waiters: (() => void)[] | undefined;
}

/**
 * Keeps two kinds of request on one node apart where they overlap: guest
 * writes and copy-on-read prefetches (a prefetch stores bytes it read a
 * moment before, so a guest write must not land in between). Requests of
 * the same kind never wait for each other, as overlapping guest writes in
 * QEMU do not.
 */
export class RequestFence {
  private readonly kinds = { write: new Set<Range>(), prefetch: new Set<Range>() };

  /** Runs `fn` as a request of `kind` once no request of the other kind overlaps it. */
  async run<T>(kind: 'write' | 'prefetch', offset: number, length: number, fn: () => Promise<T>): Promise<T> {
    const end = offset + length;
    const theirs = this.kinds[kind === 'write' ? 'prefetch' : 'write'];
    while (theirs.size > 0) {
      const o = [...theirs].find((r) => r.start < end && offset < r.end);
      if (!o) break;
      await new Promise<void>((res) => (o.waiters ??= []).push(res));
    }
    const r: Range = { start: offset, end, waiters: undefined };
    const mine = this.kinds[kind];
    mine.add(r);
    try {
      return await fn();
    } finally {
      mine.delete(r);
      if (r.waiters) for (const w of r.waiters) w();
    }
  }
}

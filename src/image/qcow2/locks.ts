/**
 * Two small concurrency tools for the qcow2 driver.
 * - Mutex: one metadata critical section at a time (lookups that may load a
 *   table, allocation, table updates, write-back).
 * - RangeLocks: writers of overlapping cluster ranges go one after another,
 *   so an allocation and a second write to the same cluster can never race.
 *   Readers never wait.
 */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

interface Held {
  start: number;
  end: number;
  done: Promise<void>;
}

export class RangeLocks {
  private held = new Set<Held>();

  /** Waits until [start, end) overlaps no held range, then holds it; returns the release function. */
  async acquire(start: number, end: number): Promise<() => void> {
    for (;;) {
      let blocker: Held | undefined;
      for (const h of this.held) {
        if (h.start < end && start < h.end) {
          blocker = h;
          break;
        }
      }
      if (!blocker) break;
      await blocker.done;
    }
    let release!: () => void;
    const entry: Held = { start, end, done: new Promise<void>((r) => (release = r)) };
    this.held.add(entry);
    return () => {
      this.held.delete(entry);
      release();
    };
  }

  /** Resolves once nothing is held (used by flush and close). */
  async drain(): Promise<void> {
    while (this.held.size > 0) await Promise.all([...this.held].map((h) => h.done));
  }
}

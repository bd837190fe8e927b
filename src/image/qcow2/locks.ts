/**
 * Two small concurrency tools for the qcow2 driver.
 * - Mutex: one metadata critical section at a time (lookups that may load a
 *   table, allocation, table updates, write-back).
 * - RangeLocks: writers of overlapping cluster ranges go one after another,
 *   so an allocation and a second write to the same cluster can never race.
 *   Readers never wait.
 */
export class Mutex {
  private held = false;
  /** Runs waiting their turn, first come first served. */
  private readonly waiters: (() => void)[] = [];

  async run<T>(fn: () => Promise<T>): Promise<T> {
    // Free: fn starts at once. Most runs find it free, and a wait costs a promise and a turn.
    if (this.held) await new Promise<void>((r) => this.waiters.push(r));
    else this.held = true;
    try {
      return await fn();
    } finally {
      // Handed straight to the next waiter, so nobody can slip in between.
      const next = this.waiters.shift();
      if (next) next();
      else this.held = false;
    }
  }
}

interface Held {
  start: number;
  end: number;
  /** Woken when the range is released; made only when someone waits. */
  waiters: (() => void)[] | undefined;
}

/** Waits until `h` is released. */
function released(h: Held): Promise<void> {
  return new Promise<void>((r) => (h.waiters ??= []).push(r));
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
      await released(blocker);
    }
    const entry: Held = { start, end, waiters: undefined };
    this.held.add(entry);
    return () => {
      this.held.delete(entry);
      if (entry.waiters) for (const w of entry.waiters) w();
    };
  }

  /** Resolves once nothing is held (used by flush and close). */
  async drain(): Promise<void> {
    while (this.held.size > 0) await Promise.all([...this.held].map(released));
  }
}

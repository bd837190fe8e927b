/**
 * The only door to time for jobs (rate limiting, sleeps). Two clocks:
 *
 * - RealClock: monotonic process time and real timers.
 * - VirtualClock: time moves only when told to (`advance`), or — in auto
 *   mode — by itself whenever every job waits only on the clock, jumping to
 *   the earliest timer. A rate-limited job then runs as fast as its I/O
 *   allows, with the same sequence of states and progress as in real time,
 *   and the same virtual duration every run.
 *
 * Times are nanoseconds, as QEMU's QEMU_CLOCK_REALTIME users count them.
 */
export interface Clock {
  readonly mode: 'real' | 'virtual';
  /** Monotonic time in nanoseconds. */
  now(): number;
  /** Resolves after `ns` nanoseconds of this clock, or at once when `wake` is called. */
  sleep(ns: number): Sleep;
  /** Jobs call this when they start or stop waiting: a virtual clock may then move on. */
  poke(): void;
  /**
   * A request held `ns` on this clock (a fault's latency): a virtual clock
   * counts it among what waits on time, so a job whose requests it holds
   * does not stop time.
   */
  holdRequest(ns: number): Promise<void>;
}

export interface Sleep {
  readonly done: Promise<void>;
  /** Ends the sleep early (a pause, resume, cancel or speed change). */
  wake(): void;
}

export class RealClock implements Clock {
  readonly mode = 'real';
  now(): number {
    return Number(process.hrtime.bigint());
  }
  sleep(ns: number): Sleep {
    let wake!: () => void;
    const done = new Promise<void>((resolve) => {
      const t = setTimeout(resolve, Math.max(0, ns / 1e6));
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
    return { done, wake };
  }
  poke(): void {}
  holdRequest(ns: number): Promise<void> {
    return this.sleep(ns).done;
  }
}

interface Timer {
  at: number;
  seq: number;
  fire: () => void;
}

/** Runs after the promise callbacks now queued have run (a job woken by a timer gets to its next wait). */
const settle = () => new Promise<void>((r) => setImmediate(r));

export class VirtualClock implements Clock {
  readonly mode = 'virtual';
  private t = 0;
  private seq = 0;
  private readonly timers: Timer[] = [];
  private checkQueued = false;
  private advancing = false;

  /**
   * @param idle With auto-advance: whether nothing but the clock can make
   *   progress now (every job sleeps on the clock, waits for a user, or has
   *   ended). Without it, time moves only by `advance`.
   */
  constructor(private readonly idle?: () => boolean) {}

  now(): number {
    return this.t;
  }

  /** Requests holdRequest holds now: the idle check may count them as waiting on time. */
  heldRequests = 0;

  async holdRequest(ns: number): Promise<void> {
    this.heldRequests++;
    try {
      await this.sleep(ns).done;
    } finally {
      this.heldRequests--;
    }
  }

  /** Timers still pending (for tests and the query command). */
  get pendingTimers(): number {
    return this.timers.length;
  }

  sleep(ns: number): Sleep {
    let wake!: () => void;
    const done = new Promise<void>((resolve) => {
      const timer: Timer = { at: this.t + Math.max(0, ns), seq: this.seq++, fire: resolve };
      this.timers.push(timer);
      this.timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      wake = () => {
        this.remove(timer);
        resolve();
      };
    });
    this.poke();
    return { done, wake };
  }

  /**
   * Moves time forward by `ns`, firing the timers that fall due in order;
   * after each, the woken work runs until it waits again, so timers it
   * sets within the window fire too.
   */
  async advance(ns: number): Promise<void> {
    const end = this.t + Math.max(0, ns);
    this.advancing = true;
    try {
      for (let next = this.timers[0]; next && next.at <= end; next = this.timers[0]) {
        this.t = Math.max(this.t, next.at);
        this.remove(next);
        next.fire();
        await settle();
      }
      this.t = end;
    } finally {
      this.advancing = false;
    }
    this.poke();
  }

  /** Something changed (a timer was set, a job went idle): check for an automatic advance. */
  poke(): void {
    if (!this.idle || this.checkQueued) return;
    this.checkQueued = true;
    setImmediate(() => {
      this.checkQueued = false;
      if (this.advancing || this.timers.length === 0 || !this.idle!()) return;
      const next = this.timers[0]!;
      void this.advance(next.at - this.t);
    });
  }

  private remove(timer: Timer): void {
    const i = this.timers.indexOf(timer);
    if (i >= 0) this.timers.splice(i, 1);
  }
}

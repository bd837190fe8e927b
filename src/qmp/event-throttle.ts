/**
 * QEMU's monitor event throttling (monitor/monitor.c
 * monitor_qapi_event_queue): some events are sent at most once per period
 * of real time. The first goes at once and starts the period; those
 * queued during it are held, only the last kept, and sent when it ends
 * (starting a new period). Of the events blockemu sends, QEMU throttles
 * QUORUM_REPORT_BAD and QUORUM_FAILURE, each on its own, once a second.
 */
const RATE_MS: Readonly<Record<string, number>> = { QUORUM_REPORT_BAD: 1000, QUORUM_FAILURE: 1000 };

interface Period {
  timer: NodeJS.Timeout;
  /** The newest event queued during the period, sent when it ends. */
  pending?: { data: unknown };
}

export class EventThrottle {
  private readonly periods = new Map<string, Period>();

  constructor(private readonly send: (name: string, data: unknown) => void) {}

  emit(name: string, data: unknown): void {
    const rate = RATE_MS[name];
    if (rate === undefined) return this.send(name, data);
    const period = this.periods.get(name);
    if (period) {
      period.pending = { data };
      return;
    }
    this.send(name, data);
    this.start(name, rate);
  }

  private start(name: string, rate: number): void {
    const period: Period = {
      timer: setTimeout(() => {
        const held = period.pending;
        this.periods.delete(name);
        if (held) {
          this.send(name, held.data);
          this.start(name, rate);
        }
      }, rate),
    };
    // A held event does not keep a process alive (QEMU drops it when it quits).
    period.timer.unref();
    this.periods.set(name, period);
  }

  /** Drops what is held (the daemon is going away). */
  close(): void {
    for (const p of this.periods.values()) clearTimeout(p.timer);
    this.periods.clear();
  }
}

import type { QmpEvent, UntypedQmpEvent } from './typed.js';

/** Something listening for events: returns true when it took the event for itself (a waiter), false when it only looked (an iterator). */
type Subscriber = (e: UntypedQmpEvent) => boolean;

export interface WaitOptions {
  /** Default 10 s. */
  timeoutMs?: number;
}

/**
 * A client's events, delivered so that listeners do not steal from each
 * other: every waiter and iterator subscribed when an event arrives sees
 * it. An event that no waiter took is kept (the backlog) for a waiter that
 * comes later — a job's completion may arrive in the same read as the
 * reply that started it, before the caller could start waiting — and
 * that waiter consumes it, so successive waits see successive events.
 */
export class EventHub {
  private readonly backlog: UntypedQmpEvent[] = [];
  private readonly subscribers = new Set<Subscriber>();
  private readonly closers = new Set<() => void>();
  private closed = false;

  push(e: UntypedQmpEvent): void {
    let taken = false;
    for (const s of [...this.subscribers]) if (s(e)) taken = true;
    if (!taken) this.backlog.push(e);
  }

  close(): void {
    this.closed = true;
    for (const c of [...this.closers]) c();
  }

  take(): UntypedQmpEvent[] {
    return this.backlog.splice(0);
  }

  /** The first event named in `names` that satisfies `predicate`: from the backlog (consumed), else the first to arrive. */
  waitFor<N extends string>(names: readonly N[], predicate: (e: QmpEvent<N>) => boolean, opts: WaitOptions, site: Error): Promise<QmpEvent<N>> {
    const wanted = new Set<string>(names);
    const what = names.length === 1 ? `event ${names[0]}` : `any of the events ${names.join(', ')}`;
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const cleanup = () => {
        clearTimeout(timer);
        this.subscribers.delete(sub);
        this.closers.delete(onClose);
      };
      const fail = (message: string, cause?: unknown) => {
        cleanup();
        reject(withStack(new Error(message, cause === undefined ? undefined : { cause }), site));
      };
      // A predicate that throws fails the wait rather than the client's socket handler.
      const matches = (e: UntypedQmpEvent): boolean | 'threw' => {
        try {
          return wanted.has(e.event) && predicate(e as QmpEvent<N>);
        } catch (err) {
          fail(`the predicate waiting for ${what} threw: ${(err as Error).message}`, err);
          return 'threw';
        }
      };
      const sub: Subscriber = (e) => {
        if (matches(e) !== true) return false;
        cleanup();
        resolve(e as QmpEvent<N>);
        return true;
      };
      const onClose = () => fail(`QMP connection closed while waiting for ${what}`);
      for (let i = 0; i < this.backlog.length; i++) {
        const m = matches(this.backlog[i]!);
        if (m === 'threw') return;
        if (m) return resolve(this.backlog.splice(i, 1)[0] as QmpEvent<N>);
      }
      if (this.closed) return fail(`QMP connection closed while waiting for ${what}`);
      const timeoutMs = opts.timeoutMs ?? 10_000;
      timer = setTimeout(() => fail(`timed out after ${timeoutMs} ms waiting for ${what}`), timeoutMs);
      this.subscribers.add(sub);
      this.closers.add(onClose);
    });
  }

  /**
   * An iterator over the backlog at the time of the call (not consumed)
   * and every event after it, until the connection closes or the loop
   * breaks. Subscribed at once, not at the first `next()`, so events that
   * arrive before the loop starts are not missed.
   */
  iterate(): AsyncIterableIterator<UntypedQmpEvent> {
    const queue = [...this.backlog];
    let wake: (() => void) | undefined;
    let done = this.closed;
    const sub: Subscriber = (e) => {
      queue.push(e);
      wake?.();
      return false;
    };
    const onClose = () => {
      done = true;
      wake?.();
    };
    const stop = () => {
      done = true;
      this.subscribers.delete(sub);
      this.closers.delete(onClose);
    };
    if (!done) {
      this.subscribers.add(sub);
      this.closers.add(onClose);
    }
    const it: AsyncIterableIterator<UntypedQmpEvent> = {
      next: async () => {
        while (queue.length === 0 && !done) await new Promise<void>((r) => (wake = r));
        wake = undefined;
        const e = queue.shift();
        if (e) return { value: e, done: false };
        stop();
        return { value: undefined, done: true };
      },
      return: async () => {
        stop();
        queue.length = 0;
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }
}

/** The error with the stack of `site` (captured where the user called), so a failure points at the caller's line, not at the socket handler. */
export function withStack<E extends Error>(err: E, site: Error): E {
  const frames = site.stack?.split('\n').slice(1).join('\n');
  if (frames !== undefined) err.stack = `${err.name}: ${err.message}\n${frames}`;
  return err;
}

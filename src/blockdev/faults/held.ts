import type { BlockNode } from '../node.js';

/** A wait for a request to be held by injection (a blkdebug breakpoint, a stall); cancel forgets it. */
export interface HeldWait {
  promise: Promise<void>;
  cancel(): void;
}

/**
 * Who tells of held requests: `when()` resolves at once if one is held,
 * else once one is. A held request waits for a command (remove_break,
 * resume, fault-release), so whatever waits on it must not keep that
 * command from being read.
 */
export class HeldRequests {
  private readonly waiters = new Set<() => void>();

  constructor(private readonly holding: () => boolean) {}

  /** A request has just been held. */
  held(): void {
    for (const w of [...this.waiters]) w();
  }

  /** `next`: only a request held from now on counts, not one held already. */
  when(next = false): HeldWait {
    if (!next && this.holding()) return { promise: Promise.resolve(), cancel: () => undefined };
    let w!: () => void;
    const promise = new Promise<void>((r) => {
      w = () => {
        this.waiters.delete(w);
        r();
      };
      this.waiters.add(w);
    });
    return { promise, cancel: () => this.waiters.delete(w) };
  }
}

/** Resolves once a request is held at `nodes` or below them (at once if one is); undefined when none of them can hold one. */
export function whenHeldBelow(nodes: Iterable<BlockNode>): HeldWait | undefined {
  const waits: HeldWait[] = [];
  const seen = new Set<BlockNode>();
  const walk = (n: BlockNode): void => {
    if (seen.has(n)) return;
    seen.add(n);
    const w = n.whenRequestHeld();
    if (w) waits.push(w);
    for (const c of n.children()) walk(c);
  };
  for (const n of nodes) walk(n);
  if (waits.length === 0) return undefined;
  return { promise: Promise.race(waits.map((w) => w.promise)), cancel: () => waits.forEach((w) => w.cancel()) };
}

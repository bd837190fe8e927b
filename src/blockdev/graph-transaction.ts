import { AsyncLocalStorage } from 'node:async_hooks';

/** Whether the code running holds the graph lock (so a nested transaction does not wait for itself). */
const holding = new AsyncLocalStorage<boolean>();
let tail: Promise<void> = Promise.resolve();
/** Graph changes queued or running (nested ones not counted). */
let pending = 0;

/**
 * Runs `fn` with no other graph change running meanwhile (QEMU changes
 * the graph under its big lock): a permission refresh waits for lock
 * bytes, and two must not interleave. Re-entrant within one chain of
 * calls, so a change made inside another does not wait for it.
 */
export function withGraphLock<T>(fn: () => Promise<T>): Promise<T> {
  if (holding.getStore()) return fn();
  pending++;
  const run = tail.then(() => holding.run(true, fn));
  tail = run.then(
    () => undefined,
    () => undefined,
  );
  // While the storage is enabled Node runs a hook for every promise made anywhere (a mirror's copies
  // spent a tenth of their time there): it is turned off whenever no graph change is under way, and
  // run() turns it on again for the next.
  tail.then(() => {
    if (--pending === 0) holding.disable();
  });
  return run;
}

/**
 * A change of the graph made in steps, each undoable (QEMU's Transaction
 * in util/transactions.c): links are changed and permissions taken first;
 * if any step fails everything done so far is undone in reverse order,
 * otherwise the commit steps run (e.g. file locks narrowed to what is now
 * needed). Exactly one of abort and commit runs.
 */
export class GraphTransaction {
  private readonly undo: Array<() => void | Promise<void>> = [];
  private readonly onCommit: Array<() => void | Promise<void>> = [];
  private done = false;

  /** Registers how to undo a step already taken. */
  addUndo(fn: () => void | Promise<void>): void {
    this.undo.push(fn);
  }

  /** Registers what to do once every step has succeeded. */
  addCommit(fn: () => void | Promise<void>): void {
    this.onCommit.push(fn);
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    for (const fn of this.undo.reverse()) await fn();
  }

  async commit(): Promise<void> {
    if (this.done) return;
    this.done = true;
    for (const fn of this.onCommit) await fn();
  }

  /** Runs `fn` as one transaction: committed if it returns, aborted (and the error rethrown) if it throws. */
  static run<T>(fn: (tran: GraphTransaction) => Promise<T>): Promise<T> {
    return withGraphLock(async () => {
      const tran = new GraphTransaction();
      let out: T;
      try {
        out = await fn(tran);
      } catch (err) {
        await tran.abort();
        throw err;
      }
      await tran.commit();
      return out;
    });
  }
}

import { AsyncLocalStorage } from 'node:async_hooks';

/** Whether the code running holds the graph lock (so a nested transaction does not wait for itself). */
const holding = new AsyncLocalStorage<boolean>();
let tail: Promise<void> = Promise.resolve();

/**
 * Runs `fn` with no other graph change running meanwhile (QEMU changes
 * the graph under its big lock): a permission refresh waits for lock
 * bytes, and two must not interleave. Re-entrant within one chain of
 * calls, so a change made inside another does not wait for it.
 */
export function withGraphLock<T>(fn: () => Promise<T>): Promise<T> {
  if (holding.getStore()) return fn();
  const run = tail.then(() => holding.run(true, fn));
  tail = run.then(
    () => undefined,
    () => undefined,
  );
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

/**
 * What the dispatcher (bench/run.ts) hands every bench, and what a bench
 * module exports. Kept apart from run.ts so bench modules never import the
 * dispatcher (that would make it run).
 */
export interface BenchContext {
  /** Repetitions per measurement; benches report the median (the machine is shared and noisy). */
  runs: number;
  /** When set, blockemu's child processes run under `node --cpu-prof` and leave their profiles here. */
  cpuProfDir: string | undefined;
  /** Bench-specific `--name=value` flags, already checked against the bench's `flags`. */
  flags: ReadonlyMap<string, string>;
}

export interface BenchModule {
  /** One line for the dispatcher's help. */
  description: string;
  /** Flags this bench understands (name → help text), so typos are refused instead of ignored. */
  flags?: Readonly<Record<string, string>>;
  run(ctx: BenchContext): Promise<void>;
}

/** A positive integer flag (sizes, counts), or the default when absent. */
export function intFlag(ctx: BenchContext, name: string, dflt: number): number {
  const v = ctx.flags.get(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`--${name} wants a positive integer, got '${v}'`);
  return n;
}

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

/** A positive integer flag (sizes, counts), or the default when absent; `min: 0` also takes 0 (counts that can be skipped). */
export function intFlag(ctx: BenchContext, name: string, dflt: number, min = 1): number {
  const v = ctx.flags.get(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} wants ${min === 0 ? 'a non-negative' : 'a positive'} integer, got '${v}'`);
  return n;
}

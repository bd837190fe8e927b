import { runSystem } from '../src/cli/system-main.js';

/** `blockemu-system-x86_64` (argv as process.argv): messages start with the executable's own name, as _filter_qemu expects. */
export async function main(argv: readonly string[], prog: string): Promise<void> {
  process.exitCode = await runSystem(argv.slice(2), prog);
}

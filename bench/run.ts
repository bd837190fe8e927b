/**
 * Bench dispatcher: `npm run bench -- [name…] [--runs=N] [--cpu-prof=DIR] [--bench-flag=value…]`.
 * No name runs every bench; an unknown name or flag is an error that lists
 * what exists. Benches are imported lazily so running one never loads
 * (or breaks on) another.
 */
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { BenchContext, BenchModule } from './lib/context.js';

/** Adding a bench is one line here: its name and its module (which exports BenchModule's members). */
const BENCHES: Record<string, () => Promise<BenchModule>> = {
  image: () => import('./image.js'),
  qmp: () => import('./qmp.js'),
  backup: () => import('./backup.js'),
  transaction: () => import('./transaction.js'),
  nbd: () => import('./nbd.js'),
  mirror: () => import('./mirror.js'),
  commit: () => import('./commit.js'),
  throttle: () => import('./throttle.js'),
  startup: () => import('./startup.js'),
  fleet: () => import('./fleet.js'),
  scale: () => import('./scale.js'),
  sparse: () => import('./sparse.js'),
};

/** Flags every bench gets through BenchContext; the rest belong to individual benches. */
const COMMON_FLAGS: Record<string, string> = {
  runs: 'repetitions per measurement, median reported (default 3)',
  'cpu-prof': "directory for `node --cpu-prof` profiles of blockemu's side",
  help: 'this text',
};

function usage(mods: Map<string, BenchModule>): string {
  const lines = ['usage: npm run bench -- [name…] [--flag=value…]', '', 'benches (none named = all):'];
  for (const [name, mod] of mods) {
    lines.push(`  ${name.padEnd(12)} ${mod.description}`);
    for (const [f, help] of Object.entries(mod.flags ?? {})) lines.push(`      --${f}=…  ${help}`);
  }
  lines.push('', 'common flags:');
  for (const [f, help] of Object.entries(COMMON_FLAGS)) lines.push(`  --${f}  ${help}`);
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const names: string[] = [];
  const flags = new Map<string, string>();
  let afterBareFlag = false;
  for (const arg of argv) {
    if (!arg.startsWith('--')) {
      // `--runs 5` would otherwise surface as "unknown bench: 5", which explains nothing.
      if (afterBareFlag && !Object.hasOwn(BENCHES, arg)) {
        console.error(`'${arg}' after a flag: flags take their value after '=' (e.g. --runs=5)`);
        return 2;
      }
      names.push(arg);
      afterBareFlag = false;
      continue;
    }
    afterBareFlag = !arg.includes('=');
    const eq = arg.indexOf('=');
    flags.set(eq < 0 ? arg.slice(2) : arg.slice(2, eq), eq < 0 ? 'true' : arg.slice(eq + 1));
  }

  const unknown = names.filter((n) => !Object.hasOwn(BENCHES, n));
  if (unknown.length > 0) {
    console.error(`unknown bench${unknown.length > 1 ? 'es' : ''}: ${unknown.join(', ')}; available: ${Object.keys(BENCHES).join(', ')}`);
    return 2;
  }
  const selected = names.length > 0 ? [...new Set(names)] : Object.keys(BENCHES);
  const mods = new Map<string, BenchModule>();
  for (const name of selected) mods.set(name, await BENCHES[name]!());

  if (flags.has('help')) {
    console.log(usage(mods));
    return 0;
  }
  const known = new Set([...Object.keys(COMMON_FLAGS), ...[...mods.values()].flatMap((m) => Object.keys(m.flags ?? {}))]);
  const badFlags = [...flags.keys()].filter((f) => !known.has(f));
  if (badFlags.length > 0) {
    console.error(`unknown flag${badFlags.length > 1 ? 's' : ''}: ${badFlags.map((f) => `--${f}`).join(', ')}\n\n${usage(mods)}`);
    return 2;
  }

  const runs = Number(flags.get('runs') ?? 3);
  if (!Number.isSafeInteger(runs) || runs < 1) {
    console.error(`--runs wants a positive integer, got '${flags.get('runs')}'`);
    return 2;
  }
  const profDir = flags.get('cpu-prof');
  const cpuProfDir = profDir === undefined ? undefined : resolve(profDir === 'true' ? 'bench-profiles' : profDir);
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });
  for (const f of Object.keys(COMMON_FLAGS)) flags.delete(f);
  const ctx: BenchContext = { runs, cpuProfDir, flags };

  for (const [name, mod] of mods) {
    console.error(`== bench ${name}`);
    await mod.run(ctx);
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exitCode = 1;
  },
);

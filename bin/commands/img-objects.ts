import type { Command } from 'commander';

/** --object definitions of the commander-parsed `img` subcommands, in order (src/cli/img/objects.ts makes them). */
const objectDefs: string[] = [];
const OBJECT_HELP = "define an object such as 'secret' (--object secret,id=sec0,data=PASSWORD) for encrypt.key-secret";

/** Adds --object to a subcommand, each definition kept in order. */
export function withObjectOption<C extends Command>(c: C): C {
  c.option('--object <objectdef>', OBJECT_HELP);
  c.on('option:object', (v: string) => objectDefs.push(v));
  return c;
}

/** The definitions given so far, handed over once. */
export function takeObjectDefs(): string[] {
  return objectDefs.splice(0);
}

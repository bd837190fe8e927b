import { HmpArgError, parseHmpArgs } from './args.js';
import { type HmpCommand, HmpCommandError, type HmpContext, HmpReportError } from './command.js';
import { HMP_COMMANDS } from './table.js';

const isSpace = (c: string | undefined) => c !== undefined && /\s/.test(c);

function find(table: readonly HmpCommand[], name: string): HmpCommand | undefined {
  return table.find((c) => c.name.split('|').includes(name));
}

/** help's line for a command: "NAME PARAMS -- HELP" (QEMU's help_cmd_dump_one). */
export function helpLine(prefix: string, c: HmpCommand): string {
  return `${prefix}${c.name} ${c.params} -- ${c.help}\n`;
}

/** `help [cmd [sub]]` and bare `info`: the commands whose name matches, in the table's (alphabetical) order. */
export function printHelp(ctx: HmpContext, words: readonly string[], table: readonly HmpCommand[] = HMP_COMMANDS, prefix = ''): void {
  const [first, ...rest] = words;
  for (const c of table) {
    if (first !== undefined && !c.name.split('|').includes(first)) continue;
    if (c.sub && rest.length > 0) printHelp(ctx, rest, c.sub, `${prefix}${c.name} `);
    else if (c.sub && first !== undefined) for (const s of c.sub) ctx.out(helpLine(`${prefix}${c.name} `, s));
    else ctx.out(helpLine(prefix, c));
  }
}

/**
 * One line typed at a human monitor (QEMU's handle_hmp_command): the
 * command looked up (into `info`'s table when words follow it), its
 * arguments parsed, then run. Every outcome is output, never a throw:
 * "unknown command: 'X'", a parse error with its "Try help" line, a
 * failure as "Error: …".
 */
export async function runHmpLine(ctx: HmpContext, line: string): Promise<void> {
  let table: readonly HmpCommand[] = HMP_COMMANDS;
  let p = 0;
  let path = '';
  for (;;) {
    while (isSpace(line[p])) p++;
    if (p >= line.length) return;
    const start = p;
    while (p < line.length && !isSpace(line[p])) p++;
    const name = line.slice(start, p);
    const cmd = find(table, name);
    if (!cmd) {
      ctx.out(`unknown command: '${path}${name}'\n`);
      return;
    }
    let q = p;
    while (isSpace(line[q])) q++;
    if (cmd.sub && q < line.length) {
      path += `${name} `;
      table = cmd.sub;
      continue;
    }
    const full = `${path}${name}`;
    try {
      const args = parseHmpArgs(name, cmd.args, line.slice(p));
      await cmd.run!(ctx, args);
    } catch (err) {
      if (err instanceof HmpArgError) {
        ctx.out(`${err.message}\nTry "help ${full}" for more information\n`);
      } else if (err instanceof HmpCommandError) {
        ctx.out(`Error: ${err.message}\n`);
      } else if (err instanceof HmpReportError) {
        ctx.out(`${err.message}\n`);
      } else throw err;
    }
    return;
  }
}

import type { CommandContext, CommandInfo } from '../command.js';

/**
 * `help [command]`. The list shows the commands this interpreter has — a
 * subset of qemu-io's — each line in qemu-io's format; `help NAME` prints
 * exactly what qemu-io prints for NAME.
 */
export const helpCommand: CommandInfo = {
  name: 'help',
  altname: '?',
  argmin: 0,
  argmax: 1,
  args: '[command]',
  oneline: 'help for one or all commands',
  global: true,
  run: async (ctx: CommandContext) => {
    if (ctx.argv.length < 2) {
      for (const ci of ctx.commands) ctx.out.out(oneline(ci.name, ci));
      ctx.out.out("\nUse 'help commandname' for extended help.\n");
      return true;
    }
    const name = ctx.argv[1]!;
    const ci = findCommand(ctx.commands, name);
    if (!ci) {
      ctx.out.out(`command ${name} not found\n`);
      return false;
    }
    ctx.out.out(oneline(name, ci) + (ci.help ?? ''));
    return true;
  },
};

/** "NAME ARGS -- ONELINE", under the name as the user typed it. */
function oneline(name: string, ci: CommandInfo): string {
  return `${name} ${ci.args !== undefined ? `${ci.args} ` : ''}-- ${ci.oneline}\n`;
}

export function findCommand(commands: readonly CommandInfo[], name: string): CommandInfo | undefined {
  return commands.find((c) => c.name === name || c.altname === name);
}

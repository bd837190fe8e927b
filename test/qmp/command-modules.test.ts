/**
 * The lazily loaded handler modules register exactly the commands the
 * daemon declares for them (CommandTable.addLazy also checks this when a
 * module first loads; here every module is loaded once), and a lazy
 * command runs its real handler.
 */
import { describe, expect, it } from 'vitest';
import { COMMAND_MODULES, SYSTEM_COMMAND_MODULES } from '../../src/qmp/command-modules.js';
import type { QmpContext } from '../../src/qmp/context.js';
import { CommandTable } from '../../src/qmp/dispatch.js';
import { command } from '../../src/qmp/schema/command.js';
import { str } from '../../src/qmp/schema/types.js';

describe('lazily loaded command modules', () => {
  it.each([...COMMAND_MODULES, ...SYSTEM_COMMAND_MODULES].map((m) => [m.defs.map((d) => d.name).join(', '), m] as const))('%s', async (_names, m) => {
    const table = new CommandTable<QmpContext>();
    (await m.load())(table);
    expect(table.defs().map((d) => d.name)).toEqual(m.defs.map((d) => d.name));
  });

  it('a lazy command loads its module on first call; a module registering other commands is refused', async () => {
    const echo = command('x-echo', { args: { text: str }, returns: str });
    const other = command('x-other', { args: { text: str }, returns: str });
    let loads = 0;
    const table = new CommandTable<undefined>().addLazy([echo], async () => {
      loads++;
      return (t) => t.add(echo, (a) => a.text);
    });
    const run = (name: string) => table.get(name)!.handler({ text: 'hi' }, undefined);
    expect(loads).toBe(0);
    expect(await run('x-echo')).toBe('hi');
    expect(await run('x-echo')).toBe('hi');
    expect(loads).toBe(1);
    const wrong = new CommandTable<undefined>().addLazy([echo], async () => (t) => t.add(other, (a) => a.text));
    await expect(wrong.get('x-echo')!.handler({ text: 'hi' }, undefined)).rejects.toThrow('declared [x-echo], the module registers [x-other]');
  });
});

/**
 * The typed client's types. The `expectTypeOf` and `@ts-expect-error`
 * lines are checked by `npm run typecheck` (tsconfig.test.json): a wrong
 * call that compiled would make its directive unused, an error. At run
 * time, the lists the types are built from are checked against what the
 * daemon serves, so a command or event registered elsewhere cannot go
 * untyped unnoticed.
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import { COMMAND_MODULES } from '../../src/qmp/command-modules.js';
import { BLOCK_JOB_COMMANDS } from '../../src/qmp/schema/block-jobs.js';
import type { CommandDef } from '../../src/qmp/schema/command.js';
import { CONTROL_COMMANDS } from '../../src/qmp/schema/control.js';
import { DAEMON_EVENTS } from '../../src/qmp/schema/events.js';
import { JOB_COMMANDS } from '../../src/qmp/schema/job.js';
import { type QmpClient, type QmpEvent, type QmpEventName, type QmpReturn, startDaemon } from '../../src/index.js';

/** Never called: its body is what the type checker sees. */
function compileOnly(c: QmpClient) {
  // Arguments are checked by name…
  void c.execute('block-job-cancel', { device: 'j', force: true });
  // @ts-expect-error a misspelled member
  void c.execute('block-job-cancel', { devic: 'j' });
  // @ts-expect-error a member of the wrong type
  void c.execute('block-job-set-speed', { device: 'j', speed: '1M' });
  // @ts-expect-error a required member left out
  void c.execute('block-job-set-speed', { device: 'j' });
  // @ts-expect-error required arguments left out
  void c.execute('blockdev-del');
  // @ts-expect-error a value the enum does not have
  void c.execute('drive-backup', { device: 'd', target: '/t', sync: 'fulll' });
  // @ts-expect-error a union's variant checks its own members (blockdev-add's file takes a BlockdevRef, not a number)
  void c.execute('blockdev-add', { driver: 'raw', 'node-name': 'r', file: 7 });
  // @ts-expect-error the transaction action's data is checked by its type
  void c.execute('transaction', { actions: [{ type: 'block-dirty-bitmap-add', data: { node: 'd' } }] });
  void c.execute('transaction', { actions: [{ type: 'block-dirty-bitmap-add', data: { node: 'd', name: 'b' } }] });
  // …arguments may be left out when none is required, and a per-call timeout comes after them.
  void c.execute('query-block-jobs');
  void c.execute('query-named-block-nodes', { flat: true }, { timeoutMs: 1000 });
  // @ts-expect-error an unknown call option
  void c.execute('query-block-jobs', {}, { timeout: 1000 });

  // Returns are typed; 64-bit integers are plain numbers on the wire.
  expectTypeOf(c.execute('query-block-jobs')).resolves.toEqualTypeOf<QmpReturn<'query-block-jobs'>>();
  expectTypeOf<QmpReturn<'query-block-jobs'>[number]['offset']>().toEqualTypeOf<number>();
  expectTypeOf<QmpReturn<'query-version'>['qemu']['major']>().toEqualTypeOf<number>();
  expectTypeOf<QmpReturn<'human-monitor-command'>>().toEqualTypeOf<string>();
  expectTypeOf<QmpReturn<'block-job-cancel'>>().toEqualTypeOf<Record<string, never>>();

  // The escape hatch: names the schema does not know (qemu-storage-daemon's own), or an explicit type argument.
  expectTypeOf(c.execute('query-chardev')).resolves.toEqualTypeOf<unknown>();
  expectTypeOf(c.execute<Array<{ label: string }>>('query-chardev', {})).resolves.toEqualTypeOf<Array<{ label: string }>>();
  void c.execute<unknown>('blockdev-add', { driver: 'raw', 'no such member': 1 });

  // Events: typed data by name, a union narrowed by `event`, untyped for unknown names.
  void c.waitForEvent('BLOCK_JOB_COMPLETED', (e) => {
    expectTypeOf(e.data.offset).toEqualTypeOf<number>();
    expectTypeOf(e.data.error).toEqualTypeOf<string | undefined>();
    // @ts-expect-error BLOCK_JOB_COMPLETED has no id
    void e.data.id;
    return true;
  });
  void c.waitForAny(['BLOCK_JOB_COMPLETED', 'JOB_STATUS_CHANGE'], (e) => {
    if (e.event === 'JOB_STATUS_CHANGE') expectTypeOf(e.data.status).toEqualTypeOf<QmpEvent<'JOB_STATUS_CHANGE'>['data']['status']>();
    else expectTypeOf(e.data.device).toEqualTypeOf<string>();
    // @ts-expect-error only one of the two has `device`
    void e.data.device;
    return true;
  });
  // @ts-expect-error a status JOB_STATUS_CHANGE cannot have
  void c.waitForEvent('JOB_STATUS_CHANGE', (e) => e.data.status === 'finished');
  void c.waitForEvent('SHUTDOWN', (e) => e.data?.['guest'] === false);
}
void compileOnly;

describe('the typed client', () => {
  it("types every command the daemon serves, and only those (query-commands)", async () => {
    const modules: readonly CommandDef[] = COMMAND_MODULES.flatMap((m): readonly CommandDef[] => m.defs);
    const typed = [...CONTROL_COMMANDS, ...JOB_COMMANDS, ...BLOCK_JOB_COMMANDS, ...modules].map((d) => d.name);
    await using d = await startDaemon();
    const c = await d.client();
    const served = (await c.execute('query-commands')).map((x) => x.name);
    expect([...typed].sort()).toEqual([...served].sort());
  });

  it('types every event the daemon declares, and only those (query-qmp-schema)', async () => {
    const typed: QmpEventName[] = DAEMON_EVENTS.map((e) => e.name);
    await using d = await startDaemon();
    const c = await d.client();
    const schema = (await c.execute('query-qmp-schema')) as Array<{ name: string; 'meta-type': string }>;
    expect([...typed].sort()).toEqual(schema.filter((e) => e['meta-type'] === 'event').map((e) => e.name).sort());
  });
});

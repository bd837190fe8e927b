import { INTERFACES } from '../../machine/drive.js';
import type { HmpArgs } from './args.js';
import { HmpCommandError, type HmpContext } from './command.js';

/**
 * `drive_add [-n] [[<domain>:]<bus>:]<slot> opts` (hmp_drive_add): a
 * -drive made at run time; only if=none can be (no board slot to plug a
 * device into), and it answers "OK". The PCI address is not used, as in
 * QEMU. -n (a node rather than a drive) is not supported.
 */
export async function driveAdd(ctx: HmpContext, a: HmpArgs): Promise<void> {
  if (a['node'] === true) throw new HmpCommandError('drive_add -n is not supported by blockemu; use blockdev-add');
  const machine = ctx.qmp.machine;
  if (!machine?.planDrive) throw new HmpCommandError('drive_add needs a machine (blockemu system)');
  let plan;
  try {
    plan = machine.planDrive(a['opts'] as string);
  } catch (err) {
    throw new HmpCommandError(err instanceof Error ? err.message : String(err), { cause: err });
  }
  const { addDrive } = await import('../commands/drive.js');
  try {
    await addDrive(ctx.qmp.graph, plan, (text) => process.stderr.write(text));
  } catch (err) {
    throw new HmpCommandError(err instanceof Error ? err.message : String(err), { cause: err });
  }
  if (plan.type !== 'none') {
    // QEMU made the drive, then takes it back.
    const b = ctx.qmp.graph.backends.byName(plan.id);
    const node = b?.node;
    if (b) await ctx.qmp.graph.backends.remove(b);
    if (node) await ctx.qmp.graph.release(node);
    throw new HmpCommandError(`Can't hot-add drive to type ${INTERFACES.indexOf(plan.type)}`);
  }
  ctx.out('OK\n');
}

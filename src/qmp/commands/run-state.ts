import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import { cont, queryStatus, stop, systemPowerdown, systemReset } from '../schema/run-state.js';
import type { Machine } from '../../machine/run-state.js';

/** The machine behind the context; these commands are only registered when there is one. */
function machine(ctx: QmpContext): Machine {
  if (!ctx.machine) throw new QmpError('CommandNotFound', 'The command is only available in blockemu system');
  return ctx.machine;
}

/** The VM-level commands of a machine without a guest (`blockemu system`), as softmmu/runstate.c and monitor/qmp-cmds.c answer them. */
export function addRunStateCommands(table: CommandTable<QmpContext>): void {
  table
    .add(queryStatus, (_a, ctx) => {
      const m = machine(ctx);
      return { running: m.running, singlestep: false, status: m.status };
    })
    .add(stop, (_a, ctx) => {
      const m = machine(ctx);
      const wasRunning = m.running;
      m.stop();
      // vm_stop drains the block layer after STOP: running jobs report paused, then running.
      if (wasRunning) ctx.jobs.drainAll();
    })
    .add(cont, async (_a, ctx) => {
      const m = machine(ctx);
      // qmp_cont: images a completed migration inactivated come back before the machine runs (nothing to do otherwise).
      if (m.status !== 'inmigrate') {
        const { activateAll } = await import('../../blockdev/inactivate.js');
        await activateAll(ctx.graph);
      }
      m.cont();
    })
    .add(systemReset, (_a, ctx) => machine(ctx).reset())
    .add(systemPowerdown, (_a, ctx) => machine(ctx).powerdown());
}

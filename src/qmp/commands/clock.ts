import { VirtualClock } from '../../blockdev/clock.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import { clockAdvance, queryClock } from '../schema/blockemu.js';

/** The clock extensions: read the job clock; advance it when the daemon runs on virtual time (--clock virtual). */
export function addClockCommands(table: CommandTable<QmpContext>): void {
  table
    .add(queryClock, async (_a, ctx) => ({ mode: ctx.jobs.clock.mode, ns: ctx.jobs.clock.now() }))
    .add(clockAdvance, async (a, ctx) => {
      const clock = ctx.jobs.clock;
      if (!(clock instanceof VirtualClock)) throw new QmpError('GenericError', 'The daemon runs on the real clock; start it with --clock virtual to advance time');
      if (a.ns < 0) throw new QmpError('GenericError', "Parameter 'ns' expects a non-negative value");
      await clock.advance(Number(a.ns));
    });
}

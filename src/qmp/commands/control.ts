import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import type { QmpContext } from '../context.js';
import { qmpCapabilities, queryCommands, queryQmpSchema, queryVersion, quit } from '../schema/control.js';
import { introspectSchema } from '../schema/introspect.js';

/** qapi/control.json's commands, as monitor/qmp-cmds-control.c implements them. */
export function addControlCommands(table: CommandTable<QmpContext>): void {
  table
    .add(qmpCapabilities, (args, ctx) => {
      if (ctx.session.negotiated) throw new QmpError('CommandNotFound', 'Capabilities negotiation is already complete, command ignored');
      const enable = args.enable ?? [];
      for (const cap of enable) if (!ctx.capabilities.includes(cap)) throw new QmpError('GenericError', `Capability ${cap} not available`);
      ctx.session.oob = enable.includes('oob');
      ctx.session.negotiated = true;
    })
    .add(queryVersion, (_args, ctx) => ctx.version)
    .add(queryCommands, (_args, ctx) => ctx.commands.defs().map((d) => ({ name: d.name })))
    .add(queryQmpSchema, (_args, ctx) => introspectSchema(ctx.commands.defs(), ctx.events))
    .add(quit, async (_args, ctx) => ctx.quit());
}

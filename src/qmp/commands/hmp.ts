import type { CommandTable } from '../dispatch.js';
import type { QmpContext } from '../context.js';
import { humanMonitorCommand } from '../schema/misc.js';
import { runHmpLine } from '../hmp/run.js';

/** HMP output goes through a monitor, which ends lines with "\r\n". */
const crlf = (s: string) => s.replace(/\r?\n/g, '\r\n');

/**
 * human-monitor-command: the line runs through the HMP command table, as
 * on a human monitor, and its output is the reply (QEMU's
 * qmp_human_monitor_command runs it on a temporary HMP monitor).
 */
export function addHmpCommands(table: CommandTable<QmpContext>): void {
  table.add(humanMonitorCommand, async (args, ctx) => {
    let text = '';
    await runHmpLine({ qmp: ctx, out: (s) => (text += s) }, args['command-line']);
    return crlf(text);
  });
}

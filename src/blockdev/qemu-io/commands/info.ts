import { strerror } from '../../../image/errno.js';
import type { CommandInfo } from '../command.js';
import { humanSize } from '../report.js';

/**
 * `info` (alias i): the driver's names (a protocol driver has its format
 * and its protocol name, both printed), then bdrv_get_info's cluster size
 * and VM state offset and the format-specific dump, as info_f prints them.
 * A driver without bdrv_get_info (file, null-co, blkdebug) stops after the
 * names and the command fails (ENOTSUP).
 */
export const infoCommand: CommandInfo = {
  name: 'info',
  altname: 'i',
  argmin: 0,
  argmax: 0,
  oneline: 'prints information about the current file',
  run: async (ctx) => {
    const d = ctx.target.describe ? await ctx.target.describe() : undefined;
    if (!d) {
      ctx.out.report(strerror('ENOTSUP'));
      return false;
    }
    for (const n of d.names) ctx.out.out(`format name: ${n}\n`);
    if (!d.info) return false;
    ctx.out.out(`cluster size: ${humanSize(d.info.clusterSize)}\nvm state offset: ${humanSize(d.info.vmStateOffset)}\n`);
    if (d.specific) ctx.out.out(`Format specific information:\n${d.specific.map((l) => `    ${l}\n`).join('')}`);
    return true;
  },
};

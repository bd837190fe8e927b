import { type CommandInfo, usage } from '../command.js';
import { getopt } from '../getopt.js';

const HELP = `
 opens a new file in the requested mode

 Example:
 'open -n -o driver=raw /tmp/data' - opens raw data file read-write, uncached

 Opens a file for subsequent use by all of the other qemu-io commands.
 -r, -- open file read-only
 -s, -- use snapshot file
 -C, -- use copy-on-read
 -n, -- disable host cache, short for -t none
 -U, -- force shared permissions
 -k, -- use kernel AIO implementation (Linux only, prefer use of -i)
 -i, -- use AIO mode (threads, native or io_uring)
 -t, -- use the given cache mode for the image
 -d, -- use the given discard mode for the image
 -o, -- options to be given to the block driver
`;

/**
 * `open [-rsCnkU] [-t cache] [-d discard] [-o options] [path]` (alias o),
 * in the tool only: the flags are the tool's own command-line flags, so
 * they go to the tool (IoHost.open) as such words, and the tool opens the
 * image as it opens the one on its command line.
 */
export const openCommand: CommandInfo = {
  name: 'open',
  altname: 'o',
  argmin: 1,
  argmax: -1,
  global: true,
  args: '[-rsCnkU] [-t cache] [-d discard] [-o options] [path]',
  oneline: 'open the file specified by path',
  help: HELP,
  run: async (ctx) => {
    const o = getopt(ctx.argv, 'snCro:ki:t:d:U');
    if (o.error !== undefined) {
      ctx.out.err(o.error);
      return usage(ctx, openCommand);
    }
    const flags: string[] = [];
    const options: string[] = [];
    for (const { opt, value } of o.options) {
      if (opt === 'o') options.push(value);
      else if (opt === 't' || opt === 'd' || opt === 'i') flags.push(`-${opt}`, value);
      else flags.push(`-${opt}`);
    }
    if (o.operands.length > 1) return usage(ctx, openCommand);
    if (!ctx.host.open) return false;
    return ctx.host.open({ flags, options, path: o.operands[0] }, ctx.out);
  },
};

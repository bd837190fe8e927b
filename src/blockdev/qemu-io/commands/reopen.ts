import { errorHint } from '../../../image/errors.js';
import { parseCacheMode } from '../cache-mode.js';
import { type CommandInfo, usage } from '../command.js';
import { getopt } from '../getopt.js';
import { parseImageOpts } from '../qemu-opts.js';

const HELP = `
 Changes the open options of an already opened image

 Example:
 'reopen -o lazy-refcounts=on' - activates lazy refcount writeback on a qcow2 image

 -r, -- Reopen the image read-only
 -w, -- Reopen the image read-write
 -c, -- Change the cache mode to the given value
 -o, -- Changes block driver options (cf. 'open' command)

`;

/**
 * `reopen [(-r|-w)] [-c cache] [-o options]` (reopen_f): the node gets new
 * options, keeping those not given (bdrv_reopen with keep_old_opts), -r/-w
 * and -c standing for read-only and the cache options unless those are
 * given themselves; the BlockBackend gives up write first when going
 * read-only, and takes the new write cache mode once the reopen succeeded.
 */
export const reopenCommand: CommandInfo = {
  name: 'reopen',
  argmin: 0,
  argmax: -1,
  args: '[(-r|-w)] [-c cache] [-o options]',
  oneline: 'reopens an image with new options',
  help: HELP,
  run: async (ctx) => {
    const r = ctx.target.reopen;
    if (!r) {
      ctx.out.report('Block node does not support reopening');
      return false;
    }
    const now = r.state();
    let readOnly = now.readOnly;
    let cache = { direct: now.cacheDirect, noFlush: now.cacheNoFlush, writethrough: now.writethrough };
    let hasRw = false;
    let hasCache = false;
    const opts = new Map<string, string>();
    const o = getopt(ctx.argv, 'c:o:rw');
    for (const { opt, value } of o.options) {
      if (opt === 'c') {
        const mode = parseCacheMode(value);
        if (!mode) {
          ctx.out.report(`Invalid cache option: ${value}`);
          return false;
        }
        cache = mode;
        hasCache = true;
      } else if (opt === 'o') {
        const parsed = parseImageOpts(value);
        for (const w of parsed.warnings) ctx.out.report(w);
        for (const [k, v] of parsed.opts) opts.set(k, v);
      } else {
        if (hasRw) {
          ctx.out.report('Only one -r/-w option may be given');
          return false;
        }
        readOnly = opt === 'r';
        hasRw = true;
      }
    }
    if (o.error !== undefined) {
      ctx.out.err(o.error);
      return usage(ctx, reopenCommand);
    }
    if (o.operands.length > 0) return usage(ctx, reopenCommand);
    if (cache.writethrough !== now.writethrough && now.deviceAttached) {
      ctx.out.report('Cannot change cache.writeback: Device attached');
      return false;
    }
    if (readOnly) await r.dropWrite();
    const options: Record<string, unknown> = Object.fromEntries(opts);
    if ('read-only' in options) {
      if (hasRw) {
        ctx.out.report("Cannot set both -r/-w and 'read-only'");
        return false;
      }
    } else {
      options['read-only'] = readOnly;
    }
    if ('cache.direct' in options || 'cache.no-flush' in options) {
      if (hasCache) {
        ctx.out.report('Cannot set both -c and the cache options');
        return false;
      }
    } else {
      options['cache.direct'] = cache.direct;
      options['cache.no-flush'] = cache.noFlush;
    }
    try {
      await r.apply(options);
    } catch (err) {
      ctx.out.report(err instanceof Error ? err.message : String(err));
      // error_report_err: the hint lines after the message.
      const hint = errorHint(err);
      if (hint !== undefined) ctx.out.err(`${hint}\n`);
      return false;
    }
    r.setWritethrough(cache.writethrough);
    return true;
  },
};

import { asUint64, checkThrottleConfig, LEGACY_LIMIT_NAMES, newThrottleConfig, throttleEnabled } from '../../blockdev/throttle/config.js';
import { disableIoLimits, enableIoLimits, ioLimitsEnabled, setIoLimits, updateIoLimitsGroup } from '../../blockdev/throttle/io-limits.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import { blockSetIoThrottle } from '../schema/block-throttle.js';
import { getBlk } from './tray.js';

/** BlockIOThrottle's legacy names and the bucket each sets. */
const BUCKETS = LEGACY_LIMIT_NAMES;

/**
 * qmp_block_set_io_throttle: the averages always, a burst and its length
 * when given, all checked; then limits on (joining the group named, else
 * the one named like the device), a move to another group, or off when
 * every average is 0. The new limits are the whole group's.
 */
export function addIoThrottleCommands(table: CommandTable<QmpContext>): void {
  table.add(blockSetIoThrottle, (a, ctx) => {
    const b = getBlk(ctx.graph, a.device, a.id);
    if (!b.node) throw new QmpError('GenericError', 'Device has no medium');
    const cfg = newThrottleConfig();
    for (const [name, i] of BUCKETS) {
      const bucket = cfg.buckets[i]!;
      bucket.avg = asUint64(a[name]);
      const max = a[`${name}_max`];
      if (max !== undefined) bucket.max = asUint64(max);
      const length = a[`${name}_max_length`];
      if (length !== undefined) bucket.burstLength = asUint64(length);
    }
    if (a.iops_size !== undefined) cfg.opSize = asUint64(a.iops_size);
    checkThrottleConfig(cfg);
    const groups = ctx.graph.throttleGroups;
    if (throttleEnabled(cfg)) {
      if (!ioLimitsEnabled(b.blk)) enableIoLimits(b.blk, groups, a.group ?? a.device ?? a.id!);
      else if (a.group !== undefined) updateIoLimitsGroup(b.blk, groups, a.group);
      setIoLimits(b.blk, cfg);
    } else if (ioLimitsEnabled(b.blk)) {
      disableIoLimits(b.blk);
    }
  });
}

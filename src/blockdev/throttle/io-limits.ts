/**
 * I/O limits on a BlockBackend (block/block-backend.c's blk_io_limits_*):
 * the BlockBackend's throttle group member joins a group by name — one a
 * throttle-group object made, one another BlockBackend made, or a new one —
 * and its requests then wait in turn with every other member's
 * (BlockBackend.read/write). The group's configuration is shared: setting
 * limits through one member sets them for all.
 *
 * The member belongs to the BlockBackend, not to its root node, so the
 * limits stay when the root changes (a snapshot's overlay, a mirror's
 * target) or the medium is ejected.
 */
import type { BlockBackend } from '../block-backend.js';
import type { ThrottleConfig } from './config.js';
import type { ThrottleGroups } from './group.js';

/** Whether limits are enabled (throttle_group_member.throttle_state is set). */
export function ioLimitsEnabled(blk: BlockBackend): boolean {
  return blk.throttle.group !== undefined;
}

/** blk_io_limits_enable: the member joins the group `name` (made without limits if none has that name). */
export function enableIoLimits(blk: BlockBackend, groups: ThrottleGroups, name: string): void {
  groups.ref(name).register(blk.throttle);
}

/** blk_set_io_limits (throttle_group_config): the group's new limits, levels emptied; a request waiting on a timer is looked at again. */
export function setIoLimits(blk: BlockBackend, cfg: ThrottleConfig): void {
  const tg = blk.throttle.group;
  if (!tg) return;
  tg.configure(cfg);
  blk.throttle.restart();
}

/**
 * blk_io_limits_disable: drained first, so the requests still queued run
 * without limits, then the member leaves its group (which goes with its
 * last member when a BlockBackend made it).
 */
export function disableIoLimits(blk: BlockBackend): void {
  const tgm = blk.throttle;
  const tg = tgm.group;
  if (!tg) return;
  tgm.limitsDisabled++;
  tgm.releaseAll();
  tg.unregister(tgm);
  tgm.limitsDisabled--;
}

/** blk_root_drained_begin: from now on its requests pass without limits, the queued ones first (shutdown's drain never ends). */
export function drainIoLimits(blk: BlockBackend): void {
  blk.throttle.limitsDisabled++;
  blk.throttle.restart();
}

/** blk_io_limits_update_group: to another group, by name; nothing when already there or not throttled. */
export function updateIoLimitsGroup(blk: BlockBackend, groups: ThrottleGroups, name: string): void {
  const tg = blk.throttle.group;
  if (!tg || tg.name === name) return;
  disableIoLimits(blk);
  enableIoLimits(blk, groups, name);
}

/** throttle_group_get_config and the group's name, for query-block; undefined when not throttled. */
export function ioLimitsOf(blk: BlockBackend): { cfg: ThrottleConfig; group: string } | undefined {
  const tg = blk.throttle.group;
  return tg ? { cfg: tg.config(), group: tg.name } : undefined;
}

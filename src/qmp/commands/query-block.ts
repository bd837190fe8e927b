import type { BlockGraph } from '../../blockdev/graph.js';
import type { MonitorBackend } from '../../blockdev/monitor-backends.js';
import { ioLimitsOf } from '../../blockdev/throttle/io-limits.js';
import { blockDeviceInfo, skipImplicitFilters } from './block-info.js';

/**
 * query-block (bdrv_query_info): every BlockBackend that has a name or a
 * device, in creation order, as the device sees it. The storage daemon has
 * none (its exports' BlockBackends are neither), so it lists nothing.
 */
export async function queryBlock(graph: BlockGraph): Promise<Record<string, unknown>[]> {
  const out = [];
  for (const b of graph.backends.list()) if (b.name !== '' || b.device) out.push(await blockInfo(b));
  return out;
}

async function blockInfo(b: MonitorBackend): Promise<Record<string, unknown>> {
  const dev = b.device;
  const info: Record<string, unknown> = { device: b.name };
  if (dev) info['qdev'] = dev.id ?? dev.path;
  // A device without change_media_cb cannot lose its medium; a BlockBackend no device uses could have any.
  Object.assign(info, { type: 'unknown', removable: dev ? dev.removable : true, locked: b.locked });
  const node = b.node;
  if (node) {
    // bdrv_query_info: the filters jobs inserted on their own are not what the device is shown to have.
    const inserted = await blockDeviceInfo(skipImplicitFilters(node), false, ioLimitsOf(b.blk), true);
    // The cache mode is the BlockBackend's (blk_enable_write_cache), not the node's.
    inserted['cache'] = { ...(inserted['cache'] as object), writeback: b.writeCache };
    info['inserted'] = inserted;
  }
  if (dev?.tray) info['tray_open'] = b.trayOpen;
  if (dev?.ioStatus) info['io-status'] = b.ioStatus;
  return info;
}

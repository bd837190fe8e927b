import { CHILD_DATA, CHILD_FILTERED, CHILD_PRIMARY, type NodeChild } from '../../blockdev/child.js';
import { filterOrCowChild } from '../../blockdev/chain.js';
import type { MonitorBackend } from '../../blockdev/monitor-backends.js';
import type { BlockNode, DriverStats } from '../../blockdev/node.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import { blockSetWriteThreshold, queryBlockstats } from '../schema/block-core.js';

/**
 * The wire shapes of query-blockstats (BlockStats, BlockDeviceStats), with
 * members in the schema's order as QEMU's output visitor adds them.
 */

/**
 * A node's BlockDeviceStats (bdrv_query_bds_stats): QEMU zeroes them and
 * fills in only wr_highest_offset — request counts and times are kept by
 * BlockBackends, which a node has none of — so even the account_* flags
 * read false here.
 */
function nodeDeviceStats(node: BlockNode | undefined): Record<string, unknown> {
  return {
    rd_bytes: 0,
    wr_bytes: 0,
    unmap_bytes: 0,
    rd_operations: 0,
    wr_operations: 0,
    flush_operations: 0,
    unmap_operations: 0,
    rd_total_time_ns: 0,
    wr_total_time_ns: 0,
    flush_total_time_ns: 0,
    unmap_total_time_ns: 0,
    wr_highest_offset: node?.writeStats.highestOffset ?? 0,
    rd_merged: 0,
    wr_merged: 0,
    unmap_merged: 0,
    failed_rd_operations: 0,
    failed_wr_operations: 0,
    failed_flush_operations: 0,
    failed_unmap_operations: 0,
    invalid_rd_operations: 0,
    invalid_wr_operations: 0,
    invalid_flush_operations: 0,
    invalid_unmap_operations: 0,
    account_invalid: false,
    account_failed: false,
    timed_stats: [],
  };
}

function driverSpecific(s: DriverStats): Record<string, unknown> {
  return { driver: s.driver, 'discard-nb-ok': s.discardNbOk, 'discard-nb-failed': s.discardNbFailed, 'discard-bytes-ok': s.discardBytesOk };
}

/**
 * The child whose statistics nest as `parent`: the primary child if it
 * holds data or is filtered (a format's file, a filter's image), else the
 * one child that holds data, if there is exactly one.
 */
function statsParent(node: BlockNode): BlockNode | undefined {
  const links = node.childList();
  const primary = links.find((c) => c.role & CHILD_PRIMARY);
  if (primary && primary.role & (CHILD_DATA | CHILD_FILTERED)) return primary.node;
  let data: NodeChild | undefined;
  for (const c of links) {
    if (!(c.role & CHILD_DATA)) continue;
    if (data) return undefined;
    data = c;
  }
  return data?.node;
}

/**
 * bdrv_query_bds_stats: the node, its data child nested as `parent`, and
 * at BlockBackend level (blkLevel) its filtered or backing child as
 * `backing` too.
 */
function nodeStats(start: BlockNode, blkLevel = false): Record<string, unknown> {
  // At BlockBackend level the filters a job inserted on its own are looked through (mirror's, commit's, stream's);
  // backup's copy-before-write filter is not implicit in QEMU, whatever a reopen makes of it here.
  let node = start;
  const skip = (n: BlockNode) => blkLevel && n.implicit && n.driver !== 'copy-before-write';
  for (let below = filterOrCowChild(node); skip(node) && below; below = filterOrCowChild(node)) node = below;
  const out: Record<string, unknown> = { 'node-name': node.nodeName, stats: nodeDeviceStats(node) };
  const parent = statsParent(node);
  if (parent) out['parent'] = nodeStats(parent, blkLevel);
  // Any filtered or COW child (where QEMU once put bs->backing).
  const backing = blkLevel ? filterOrCowChild(node) : undefined;
  if (backing) out['backing'] = nodeStats(backing, blkLevel);
  const specific = node.specificStats();
  if (specific) out['driver-specific'] = driverSpecific(specific);
  return out;
}

/**
 * A BlockBackend's BlockStats (qmp_query_blockstats without query-nodes):
 * its root's statistics at BlockBackend level, named by the BlockBackend
 * and its device, with the BlockBackend's own counters — all zero, no
 * guest does I/O — and accounting on, as devices leave it.
 */
function backendStats(b: MonitorBackend): Record<string, unknown> {
  const s = b.node ? nodeStats(b.node, true) : { stats: undefined };
  const stats = { ...nodeDeviceStats(b.node), account_invalid: true, account_failed: true };
  const dev = b.device;
  return { device: b.name, ...(dev ? { qdev: dev.id ?? dev.path } : {}), ...s, stats };
}

/** An int QAPI member holding a uint64 (write_threshold): QEMU's int64 view of it. */
export function asInt64(v: bigint): number | bigint {
  const s = v >= 1n << 63n ? v - (1n << 64n) : v;
  return s >= BigInt(Number.MIN_SAFE_INTEGER) && s <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(s) : s;
}

/** query-blockstats and block-set-write-threshold (block-core.json). */
export function addBlockStatsCommands(table: CommandTable<QmpContext>): void {
  table
    .add(queryBlockstats, (args, ctx) => {
      // Without query-nodes only BlockBackends with a name or a device are listed; the storage daemon's
      // (exports', jobs', commands') are anonymous, so qemu-storage-daemon answers [] and so do we.
      if (!args['query-nodes']) return ctx.graph.backends.list().filter((b) => b.name !== '' || b.device).map(backendStats);
      // Oldest node first (bdrv_next_node), where query-named-block-nodes lists the newest first.
      return ctx.graph.list().reverse().map((n) => nodeStats(n));
    })
    .add(blockSetWriteThreshold, (args, ctx) => {
      const node = ctx.graph.get(args['node-name']);
      if (!node) throw new QmpError('GenericError', `Device '${args['node-name']}' not found`);
      node.writeStats.setThreshold(args['write-threshold']);
    });
}

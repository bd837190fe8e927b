/**
 * query-blockstats and block-set-write-threshold (qapi/block-core.json
 * 7.2): I/O statistics of BlockBackends and nodes, and the node's write
 * threshold. The return types are produced by our handlers, declared so
 * query-qmp-schema describes them as QEMU does.
 */
import { command } from '../command.js';
import { array, bool, int, lazy, number, type QType, str, struct, uint64, union } from '../types.js';
import { BlockdevDriver } from './common.js';

export const BlockLatencyHistogramInfo = struct('BlockLatencyHistogramInfo', { boundaries: array(uint64), bins: array(uint64) });

export const BlockDeviceTimedStats = struct('BlockDeviceTimedStats', {
  interval_length: int,
  min_rd_latency_ns: int,
  max_rd_latency_ns: int,
  avg_rd_latency_ns: int,
  min_wr_latency_ns: int,
  max_wr_latency_ns: int,
  avg_wr_latency_ns: int,
  min_flush_latency_ns: int,
  max_flush_latency_ns: int,
  avg_flush_latency_ns: int,
  avg_rd_queue_depth: number,
  avg_wr_queue_depth: number,
});

export const BlockDeviceStats = struct('BlockDeviceStats', {
  rd_bytes: int,
  wr_bytes: int,
  unmap_bytes: int,
  rd_operations: int,
  wr_operations: int,
  flush_operations: int,
  unmap_operations: int,
  rd_total_time_ns: int,
  wr_total_time_ns: int,
  flush_total_time_ns: int,
  unmap_total_time_ns: int,
  wr_highest_offset: int,
  rd_merged: int,
  wr_merged: int,
  unmap_merged: int,
  '*idle_time_ns': int,
  failed_rd_operations: int,
  failed_wr_operations: int,
  failed_flush_operations: int,
  failed_unmap_operations: int,
  invalid_rd_operations: int,
  invalid_wr_operations: int,
  invalid_flush_operations: int,
  invalid_unmap_operations: int,
  account_invalid: bool,
  account_failed: bool,
  timed_stats: array(BlockDeviceTimedStats),
  '*rd_latency_histogram': BlockLatencyHistogramInfo,
  '*wr_latency_histogram': BlockLatencyHistogramInfo,
  '*flush_latency_histogram': BlockLatencyHistogramInfo,
});

export const BlockStatsSpecificFile = struct('BlockStatsSpecificFile', { 'discard-nb-ok': uint64, 'discard-nb-failed': uint64, 'discard-bytes-ok': uint64 });
export const BlockStatsSpecificNvme = struct('BlockStatsSpecificNvme', { 'completion-errors': uint64, 'aligned-accesses': uint64, 'unaligned-accesses': uint64 });
/** host_device shares file's counters (the reference build has HAVE_HOST_BLOCK_DEVICE). */
export const BlockStatsSpecific = union('BlockStatsSpecific', { driver: BlockdevDriver }, 'driver', {
  file: BlockStatsSpecificFile,
  host_device: BlockStatsSpecificFile,
  nvme: BlockStatsSpecificNvme,
});

/** BlockStats nests itself (parent, backing); its value is built by the handler, so its TypeScript shape is left loose. */
const blockStats = lazy((): QType<Record<string, unknown>> => BlockStats);
export const BlockStats: QType<Record<string, unknown>> = struct('BlockStats', {
  '*device': str,
  '*qdev': str,
  '*node-name': str,
  stats: BlockDeviceStats,
  '*driver-specific': BlockStatsSpecific,
  '*parent': blockStats,
  '*backing': blockStats,
}) as QType<Record<string, unknown>>;

export const queryBlockstats = command('query-blockstats', { args: { '*query-nodes': bool }, returns: array(BlockStats) });
export const blockSetWriteThreshold = command('block-set-write-threshold', { args: { 'node-name': str, 'write-threshold': uint64 } });

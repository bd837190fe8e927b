/** block_set_io_throttle of qapi/block-core.json 7.2 (`blockemu system` only: the storage daemon has no BlockBackends it names). */
import { command } from './command.js';
import { int, str, struct } from './types.js';

/** The burst limits, I/O size and group, which BlockIOThrottle and BlockDeviceInfo (query-block's `inserted`) list alike. */
export const IO_LIMIT_BURST_MEMBERS = {
  '*bps_max': int,
  '*bps_rd_max': int,
  '*bps_wr_max': int,
  '*iops_max': int,
  '*iops_rd_max': int,
  '*iops_wr_max': int,
  '*bps_max_length': int,
  '*bps_rd_max_length': int,
  '*bps_wr_max_length': int,
  '*iops_max_length': int,
  '*iops_rd_max_length': int,
  '*iops_wr_max_length': int,
  '*iops_size': int,
  '*group': str,
};

/** The average limits, which both structs list too (BlockDeviceInfo with `image` between these and the rest). */
export const IO_LIMIT_AVG_MEMBERS = { bps: int, bps_rd: int, bps_wr: int, iops: int, iops_rd: int, iops_wr: int };

export const BlockIOThrottle = struct('BlockIOThrottle', {
  '*device': str,
  '*id': str,
  ...IO_LIMIT_AVG_MEMBERS,
  ...IO_LIMIT_BURST_MEMBERS,
});

export const blockSetIoThrottle = command('block_set_io_throttle', { args: BlockIOThrottle });

/** The block-job commands of qapi/block-core.json (7.2); the generic job commands are in job.ts. */
import { BlockDeviceIoStatus } from './block-core.js';
import { command } from './command.js';
import { JobStatus } from './job.js';
import { array, bool, int, str, struct } from './types.js';

export const BlockJobInfo = struct('BlockJobInfo', {
  type: str,
  device: str,
  len: int,
  offset: int,
  busy: bool,
  paused: bool,
  speed: int,
  'io-status': BlockDeviceIoStatus,
  ready: bool,
  status: JobStatus,
  'auto-finalize': bool,
  'auto-dismiss': bool,
  '*error': str,
});

export const queryBlockJobs = command('query-block-jobs', { returns: array(BlockJobInfo) });
export const blockJobSetSpeed = command('block-job-set-speed', { args: { device: str, speed: int } });
export const blockJobCancel = command('block-job-cancel', { args: { device: str, '*force': bool } });
export const blockJobPause = command('block-job-pause', { args: { device: str } });
export const blockJobResume = command('block-job-resume', { args: { device: str } });
export const blockJobComplete = command('block-job-complete', { args: { device: str } });
export const blockJobDismiss = command('block-job-dismiss', { args: { id: str } });
export const blockJobFinalize = command('block-job-finalize', { args: { id: str } });

export const BLOCK_JOB_COMMANDS = [
  queryBlockJobs, blockJobSetSpeed, blockJobCancel, blockJobPause, blockJobResume, blockJobComplete, blockJobDismiss, blockJobFinalize,
] as const;

/** qapi/job.json and the block-job commands of block-core.json (7.2). */
import { command, event } from './command.js';
import { array, bool, enumType, int, str, struct } from './types.js';

export const JobType = enumType('JobType', ['commit', 'stream', 'mirror', 'backup', 'create', 'amend', 'snapshot-load', 'snapshot-save', 'snapshot-delete']);
export const JobStatus = enumType('JobStatus', ['undefined', 'created', 'running', 'paused', 'ready', 'standby', 'waiting', 'pending', 'aborting', 'concluded', 'null']);
export const BlockDeviceIoStatus = enumType('BlockDeviceIoStatus', ['ok', 'failed', 'nospace']);
export const IoOperationType = enumType('IoOperationType', ['read', 'write']);
export const BlockErrorAction = enumType('BlockErrorAction', ['ignore', 'report', 'stop']);

export const JobInfo = struct('JobInfo', { id: str, type: JobType, status: JobStatus, 'current-progress': int, 'total-progress': int, '*error': str });
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

export const queryJobs = command('query-jobs', { returns: array(JobInfo) });
export const jobPause = command('job-pause', { args: { id: str } });
export const jobResume = command('job-resume', { args: { id: str } });
export const jobCancel = command('job-cancel', { args: { id: str } });
export const jobComplete = command('job-complete', { args: { id: str } });
export const jobDismiss = command('job-dismiss', { args: { id: str } });
export const jobFinalize = command('job-finalize', { args: { id: str } });
export const queryBlockJobs = command('query-block-jobs', { returns: array(BlockJobInfo) });
export const blockJobSetSpeed = command('block-job-set-speed', { args: { device: str, speed: int } });
export const blockJobCancel = command('block-job-cancel', { args: { device: str, '*force': bool } });
export const blockJobPause = command('block-job-pause', { args: { device: str } });
export const blockJobResume = command('block-job-resume', { args: { device: str } });
export const blockJobComplete = command('block-job-complete', { args: { device: str } });
export const blockJobDismiss = command('block-job-dismiss', { args: { id: str } });
export const blockJobFinalize = command('block-job-finalize', { args: { id: str } });

export const JOB_COMMANDS = [
  queryJobs, jobPause, jobResume, jobCancel, jobComplete, jobDismiss, jobFinalize,
  queryBlockJobs, blockJobSetSpeed, blockJobCancel, blockJobPause, blockJobResume, blockJobComplete, blockJobDismiss, blockJobFinalize,
] as const;

export const JOB_EVENTS = [
  event('JOB_STATUS_CHANGE', { id: str, status: JobStatus }),
  event('BLOCK_JOB_PENDING', { type: JobType, id: str }),
  event('BLOCK_JOB_COMPLETED', { type: JobType, device: str, len: int, offset: int, speed: int, '*error': str }),
  event('BLOCK_JOB_CANCELLED', { type: JobType, device: str, len: int, offset: int, speed: int }),
  event('BLOCK_JOB_ERROR', { device: str, operation: IoOperationType, action: BlockErrorAction }),
] as const;

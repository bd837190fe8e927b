/** The block-core events qemu-storage-daemon 7.2 declares (qapi/block-core.json). */
import { IoOperationType } from '../common.js';
import { event } from '../command.js';
import { JobType } from '../job.js';
import { bool, enumType, int, str, uint64 } from '../types.js';
import { BlockErrorAction } from './common.js';

export const blockImageCorrupted = event('BLOCK_IMAGE_CORRUPTED', {
  device: str,
  '*node-name': str,
  msg: str,
  '*offset': int,
  '*size': int,
  fatal: bool,
});
export const blockIoError = event('BLOCK_IO_ERROR', {
  device: str,
  '*node-name': str,
  operation: IoOperationType,
  action: BlockErrorAction,
  '*nospace': bool,
  reason: str,
});
export const blockJobCompleted = event('BLOCK_JOB_COMPLETED', { type: JobType, device: str, len: int, offset: int, speed: int, '*error': str });
export const blockJobCancelled = event('BLOCK_JOB_CANCELLED', { type: JobType, device: str, len: int, offset: int, speed: int });
export const blockJobError = event('BLOCK_JOB_ERROR', { device: str, operation: IoOperationType, action: BlockErrorAction });
export const blockJobReady = event('BLOCK_JOB_READY', { type: JobType, device: str, len: int, offset: int, speed: int });
export const blockJobPending = event('BLOCK_JOB_PENDING', { type: JobType, id: str });
export const blockWriteThreshold = event('BLOCK_WRITE_THRESHOLD', { 'node-name': str, 'amount-exceeded': uint64, 'write-threshold': uint64 });

export const QuorumOpType = enumType('QuorumOpType', ['read', 'write', 'flush']);
export const quorumFailure = event('QUORUM_FAILURE', { reference: str, 'sector-num': int, 'sectors-count': int });
export const quorumReportBad = event('QUORUM_REPORT_BAD', { type: QuorumOpType, '*error': str, 'node-name': str, 'sector-num': int, 'sectors-count': int });

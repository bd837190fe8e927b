import type { Logger } from '../log.js';
import type { BlockJobListener } from './block-job.js';

/**
 * A job listener that also logs what it hears: a job's start and end at
 * info (how far it got, why it failed), every other status change at
 * debug, and each I/O error its policy meets at warn (the monitor gets
 * BLOCK_JOB_ERROR; the log keeps it for whoever reads the daemon's output).
 */
export function loggingJobListener(inner: BlockJobListener, log: Logger): BlockJobListener {
  return {
    statusChanged(job) {
      const line = { job: job.id, type: job.type, status: job.status };
      if (job.status === 'created' || job.status === 'concluded') {
        log.info({ ...line, offset: job.progressCurrent, len: job.progressTotal, ...(job.error !== undefined ? { error: job.error } : {}) }, 'job status');
      } else log.debug(line, 'job status');
      inner.statusChanged(job);
    },
    pending: (job) => inner.pending(job),
    finished(job, cancelled) {
      log.debug({ job: job.id, type: job.type, cancelled, offset: job.progressCurrent, len: job.progressTotal }, 'job finished');
      inner.finished(job, cancelled);
    },
    removed: (job) => inner.removed(job),
    ready(job) {
      log.info({ job: job.id, type: job.type, offset: job.progressCurrent, len: job.progressTotal }, 'job ready');
      inner.ready?.(job);
    },
    ioError(job, operation, action) {
      log.warn({ job: job.id, type: job.type, operation, action }, 'job I/O error');
      inner.ioError(job, operation, action);
    },
  };
}

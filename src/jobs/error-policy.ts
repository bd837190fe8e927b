/** A block job's policy for an I/O error of its source or target (BlockdevOnError). */
export type OnError = 'report' | 'ignore' | 'enospc' | 'stop' | 'auto';
/** What the job does about one error (BlockErrorAction), as BLOCK_JOB_ERROR reports it. */
export type ErrorAction = 'report' | 'ignore' | 'stop';
/** A job's io-status in query-block-jobs. */
export type IoStatus = 'ok' | 'failed' | 'nospace';

/** blockjob.c block_job_error_action: the policy and the errno decide. */
export function errorAction(policy: OnError, errno: string): ErrorAction {
  switch (policy) {
    case 'enospc':
    case 'auto':
      return errno === 'ENOSPC' ? 'stop' : 'report';
    default:
      return policy;
  }
}

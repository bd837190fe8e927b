/**
 * QEMU's job state machine as tables (job.c JobSTT and JobVerbTable): the
 * transitions a job may make and the verbs each status accepts.
 */
export const JOB_STATUSES = ['undefined', 'created', 'running', 'paused', 'ready', 'standby', 'waiting', 'pending', 'aborting', 'concluded', 'null'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export const JOB_VERBS = ['cancel', 'pause', 'resume', 'set-speed', 'complete', 'finalize', 'dismiss'] as const;
export type JobVerb = (typeof JOB_VERBS)[number];

const TRANSITIONS: Record<JobStatus, readonly JobStatus[]> = {
  undefined: ['created'],
  created: ['running', 'aborting', 'null'],
  running: ['paused', 'ready', 'waiting', 'aborting'],
  paused: ['running'],
  ready: ['standby', 'waiting', 'aborting'],
  standby: ['ready'],
  waiting: ['pending', 'aborting'],
  pending: ['aborting', 'concluded'],
  aborting: ['aborting', 'concluded'],
  concluded: ['null'],
  null: [],
};

const ACTIVE: readonly JobStatus[] = ['created', 'running', 'paused', 'ready', 'standby'];
const VERBS: Record<JobVerb, readonly JobStatus[]> = {
  cancel: [...ACTIVE, 'waiting', 'pending'],
  pause: ACTIVE,
  resume: ACTIVE,
  'set-speed': ACTIVE,
  complete: ['ready', 'standby'],
  finalize: ['pending'],
  dismiss: ['concluded'],
};

export function canTransition(from: JobStatus, to: JobStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

export function acceptsVerb(status: JobStatus, verb: JobVerb): boolean {
  return VERBS[verb].includes(status);
}

/** job_is_completed: the job's own work is over (it waits, finalizes or is gone). */
export function isCompleted(status: JobStatus): boolean {
  return status === 'waiting' || status === 'pending' || status === 'aborting' || status === 'concluded' || status === 'null';
}

/** qapi/job.json (7.2): the generic job types, commands and event. */
import { command, event } from './command.js';
import { array, enumType, int, str, struct } from './types.js';

export const JobType = enumType('JobType', ['commit', 'stream', 'mirror', 'backup', 'create', 'amend', 'snapshot-load', 'snapshot-save', 'snapshot-delete']);
export const JobStatus = enumType('JobStatus', ['undefined', 'created', 'running', 'paused', 'ready', 'standby', 'waiting', 'pending', 'aborting', 'concluded', 'null']);
export const JobVerb = enumType('JobVerb', ['cancel', 'pause', 'resume', 'set-speed', 'complete', 'dismiss', 'finalize']);
export const JobInfo = struct('JobInfo', { id: str, type: JobType, status: JobStatus, 'current-progress': int, 'total-progress': int, '*error': str });

export const jobPause = command('job-pause', { args: { id: str } });
export const jobResume = command('job-resume', { args: { id: str } });
export const jobCancel = command('job-cancel', { args: { id: str } });
export const jobComplete = command('job-complete', { args: { id: str } });
export const jobDismiss = command('job-dismiss', { args: { id: str } });
export const jobFinalize = command('job-finalize', { args: { id: str } });
export const queryJobs = command('query-jobs', { returns: array(JobInfo) });

export const jobStatusChange = event('JOB_STATUS_CHANGE', { id: str, status: JobStatus });

export const JOB_COMMANDS = [jobPause, jobResume, jobCancel, jobComplete, jobDismiss, jobFinalize, queryJobs] as const;
export const JOB_EVENTS = [jobStatusChange] as const;

import type { BlockJobListener } from '../../jobs/block-job.js';
import type { Job } from '../../jobs/job.js';
import type { JobManager } from '../../jobs/manager.js';
import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import * as B from '../schema/block-jobs.js';
import * as J from '../schema/job.js';

/** What block jobs add to a job (backup has them; other jobs default). */
interface BlockJobFields {
  /** An int64, exact (see Int64). */
  speed?: number | bigint;
  ioStatus?: 'ok' | 'failed' | 'nospace';
  setSpeed?(speed: number | bigint): void;
}
const blockJob = (j: Job) => j as Job & BlockJobFields;

/** Job events as QEMU sends them (members in schema order, see json-out.ts). */
export function jobEventListener(emit: (name: string, data: Record<string, unknown>) => void, jobs: () => JobManager): BlockJobListener {
  const common = (j: Job) => ({ type: j.type, device: j.id, len: j.progressTotal, offset: j.progressCurrent, speed: blockJob(j).speed ?? 0 });
  return {
    statusChanged: (j) => emit('JOB_STATUS_CHANGE', { id: j.id, status: j.status }),
    // BLOCK_JOB_* are for block jobs only (a create job sends JOB_STATUS_CHANGE alone).
    pending: (j) => j.isBlockJob && emit('BLOCK_JOB_PENDING', { type: j.type, id: j.id }),
    finished: (j, cancelled) =>
      !j.isBlockJob ? undefined : cancelled ? emit('BLOCK_JOB_CANCELLED', common(j)) : emit('BLOCK_JOB_COMPLETED', { ...common(j), ...(j.error !== undefined ? { error: j.error } : {}) }),
    removed: (j) => jobs().remove(j),
    ready: (j) => j.isBlockJob && emit('BLOCK_JOB_READY', common(j)),
    ioError: (j, operation, action) => emit('BLOCK_JOB_ERROR', { device: j.id, operation, action }),
  };
}

function jobInfo(j: Job): Record<string, unknown> {
  return {
    id: j.id,
    type: j.type,
    status: j.status,
    'current-progress': j.progressCurrent,
    'total-progress': j.progressTotal,
    ...(j.error !== undefined ? { error: j.error } : {}),
  };
}

function blockJobInfo(j: Job): Record<string, unknown> {
  const b = blockJob(j);
  return {
    type: j.type,
    device: j.id,
    len: j.progressTotal,
    offset: j.progressCurrent,
    busy: j.busy,
    paused: j.paused,
    speed: b.speed ?? 0,
    'io-status': b.ioStatus ?? 'ok',
    ready: j.status === 'ready' || j.status === 'standby',
    status: j.status,
    'auto-finalize': j.autoFinalize,
    'auto-dismiss': j.autoDismiss,
    ...(j.error !== undefined ? { error: j.error } : {}),
  };
}

/** job-* commands: an unknown id is a GenericError "Job not found" (job-qmp.c). */
function byId(ctx: QmpContext, id: string): Job {
  const j = ctx.jobs.find(id);
  if (!j) throw new QmpError('GenericError', 'Job not found');
  return j;
}

/** block-job-* commands: an unknown id is DeviceNotActive (blockdev.c find_block_job_locked). */
function byDevice(ctx: QmpContext, id: string): Job {
  const j = ctx.jobs.find(id);
  if (!j || !j.isBlockJob) throw new QmpError('DeviceNotActive', `Block job '${id}' not found`);
  return j;
}

export function addJobCommands(table: CommandTable<QmpContext>): void {
  table
    .add(J.queryJobs, (_a, ctx) => ctx.jobs.list().map(jobInfo) as never)
    .add(J.jobPause, (a, ctx) => byId(ctx, a.id).userPause())
    .add(J.jobResume, (a, ctx) => byId(ctx, a.id).userResume())
    .add(J.jobCancel, (a, ctx) => byId(ctx, a.id).cancel())
    .add(J.jobComplete, (a, ctx) => byId(ctx, a.id).complete())
    .add(J.jobDismiss, (a, ctx) => byId(ctx, a.id).dismiss())
    .add(J.jobFinalize, (a, ctx) => byId(ctx, a.id).finalize())
    .add(B.queryBlockJobs, (_a, ctx) => ctx.jobs.list().filter((j) => j.isBlockJob).map(blockJobInfo) as never)
    .add(B.blockJobSetSpeed, (a, ctx) => {
      const j = blockJob(byDevice(ctx, a.device));
      j.checkVerb('set-speed');
      if (a.speed < 0) throw new QmpError('GenericError', "Parameter 'speed' expects a non-negative value");
      j.setSpeed?.(a.speed);
    })
    .add(B.blockJobCancel, (a, ctx) => {
      const j = byDevice(ctx, a.device);
      j.checkVerb('cancel');
      if (j.userPaused && !(a.force ?? false)) throw new QmpError('GenericError', `The block job for device '${a.device}' is currently paused`);
      return j.cancel(a.force ?? false);
    })
    .add(B.blockJobPause, (a, ctx) => byDevice(ctx, a.device).userPause())
    .add(B.blockJobResume, (a, ctx) => byDevice(ctx, a.device).userResume())
    .add(B.blockJobComplete, (a, ctx) => byDevice(ctx, a.device).complete())
    .add(B.blockJobDismiss, (a, ctx) => byDevice(ctx, a.id).dismiss())
    .add(B.blockJobFinalize, (a, ctx) => byDevice(ctx, a.id).finalize());
}

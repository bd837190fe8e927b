import type { BlockNode } from '../../blockdev/node.js';
import type { BlockJobStart, OnError } from '../../jobs/block-job.js';
import type { QmpContext } from '../context.js';
import { namesOf } from './block-info.js';
import { reopenContext } from './reopen.js';

/** The job arguments block-stream and block-commit share. */
export interface JobArgs {
  'job-id'?: string;
  /** An int64, exact (see Int64). */
  speed?: number | bigint;
  'on-error'?: OnError;
  'filter-node-name'?: string;
  'auto-finalize'?: boolean;
  'auto-dismiss'?: boolean;
}

/** The name QEMU gives a node (bdrv_refresh_filename): what jobs write as a backing file name. */
export const nodeFilename = (n: BlockNode): string => namesOf(n).get(n)!.filename;

/** A job start from a command's arguments, with QEMU's defaults: no id but the name of the BlockBackend over `bs` ('' if none), no speed limit, on-error report. */
export function jobStart(ctx: QmpContext, a: JobArgs, bs: BlockNode): BlockJobStart {
  return {
    graph: ctx.graph,
    jobs: ctx.jobs,
    events: ctx.jobEvents,
    id: a['job-id'] ?? ctx.graph.backends.deviceName(bs),
    speed: a.speed ?? 0,
    onError: a['on-error'] ?? 'report',
    filterNodeName: a['filter-node-name'],
    autoFinalize: a['auto-finalize'],
    autoDismiss: a['auto-dismiss'],
    nameOf: nodeFilename,
    reopen: reopenContext(ctx),
  };
}

import type { BlockGraph } from '../blockdev/graph.js';
import { type HeldWait, whenHeldBelow } from '../blockdev/faults/held.js';
import type { BlockNode } from '../blockdev/node.js';
import type { ReopenContext } from '../blockdev/reopen.js';
import { type ErrorAction, errorAction, type IoStatus, type OnError } from './error-policy.js';
import { JobNodes } from './job-nodes.js';
import type { Job, JobListener, JobOptions } from './job.js';
import type { JobManager } from './manager.js';
import { RateLimitedJob } from './rate-limited-job.js';

export type { ErrorAction, IoStatus, OnError } from './error-policy.js';

export interface BlockJobListener extends JobListener {
  /** BLOCK_JOB_ERROR: emitted once per error the policy handles, before the job acts on it. */
  ioError(job: Job, operation: 'read' | 'write', action: ErrorAction): void;
}

export interface BlockJobOptions extends JobOptions {
  /** Exact as QMP gave it (see RateLimitedJob). */
  speed?: number | bigint;
  /** A node the job let go of when it went away (bdrv_unref): the graph closes it if nobody else holds it. */
  release?: (node: BlockNode) => Promise<void>;
}

/** What a command starting a block job on a chain (stream, commit) hands over besides the nodes. */
export interface BlockJobStart {
  graph: BlockGraph;
  jobs: JobManager;
  events: BlockJobListener;
  /** The job's id; QEMU's default is the device's BlockBackend name, which the storage daemon never has (''). */
  id: string;
  speed: number | bigint;
  onError: OnError;
  filterNodeName?: string;
  autoFinalize?: boolean;
  autoDismiss?: boolean;
  /** The name QEMU gives a node (bdrv_refresh_filename), written as a new backing file name. */
  nameOf: (n: BlockNode) => string;
  /** What reopening a node read-write for the job (and back) needs. */
  reopen: ReopenContext;
}

/** The job options of a start: a negative speed is refused once the job exists (block_job_set_speed), so the job takes none. */
export function startOptions(s: BlockJobStart): BlockJobOptions {
  return {
    speed: s.speed < 0 ? 0 : s.speed,
    autoFinalize: s.autoFinalize,
    autoDismiss: s.autoDismiss,
    clock: s.jobs.clock,
    release: (n) => s.graph.release(n),
  };
}

/**
 * A job on block nodes (blockjob.c BlockJob) beyond its speed: an
 * io-status, the error policy's common part, and its links to the nodes
 * it uses (held until the job goes away, when nodes only it held are
 * released).
 */
export abstract class BlockJob extends RateLimitedJob {
  ioStatus: IoStatus = 'ok';
  /** The job's links to the nodes it holds. */
  readonly nodes: JobNodes;
  private readonly release: ((node: BlockNode) => Promise<void>) | undefined;

  constructor(
    id: string,
    type: string,
    private readonly blockEvents: BlockJobListener,
    opts: BlockJobOptions,
  ) {
    super(id, type, blockEvents, opts);
    this.nodes = new JobNodes(type, id);
    this.release = opts.release;
  }

  /** Sleeps as long as the rate limit asks after `bytes` more were copied (block_job_ratelimit_get_delay). */
  protected rateLimitDelay(bytes: number): number {
    return this.limiter.delay(bytes);
  }

  /**
   * block_job_error_action: BLOCK_JOB_ERROR, then for stop a pause as if
   * by the user (job-resume lifts it) and the io-status set.
   */
  protected errorAction(policy: OnError, operation: 'read' | 'write', errno: string): ErrorAction {
    const action = errorAction(policy, errno);
    this.blockEvents.ioError(this, operation, action);
    if (action === 'stop') {
      if (!this.userPaused) {
        this.pause();
        this.userPaused = true;
      }
      if (this.ioStatus === 'ok') this.ioStatus = errno === 'ENOSPC' ? 'nospace' : 'failed';
    }
    return action;
  }

  /** block_job_user_resume: a resume clears the io-status. */
  override userResume(): void {
    super.userResume();
    this.ioStatus = 'ok';
  }

  /** Cancelling a user-paused job resumes it first (job_cancel_async_locked), which clears the io-status too. */
  override requestCancel(force = true): void {
    if (this.userPaused) this.ioStatus = 'ok';
    super.requestCancel(force);
  }

  /** A request held at the job's nodes or below them. */
  protected override whenRequestHeld(): HeldWait | undefined {
    return whenHeldBelow(this.nodes.list().map((l) => l.node));
  }

  /** block_job_remove_all_bdrv: the links go, and nodes only the job held go with them. */
  protected async dropNodes(): Promise<void> {
    const held = await this.nodes.removeAll();
    if (this.release) for (const n of held) await this.release(n);
  }

  /** block_job_free. */
  protected override async free(): Promise<void> {
    await this.dropNodes();
  }
}

import type { BlockGraph } from '../blockdev/graph.js';
import type { BlockExports } from '../export/exports.js';
import type { BlockJobListener } from '../jobs/block-job.js';
import type { JobManager } from '../jobs/manager.js';
import type { ObjectRegistry } from '../objects/registry.js';
import type { Machine } from '../machine/run-state.js';
import type { CommandTable, SessionState } from './dispatch.js';
import type { EventDef } from './schema/command.js';

/** What QEMU's version triple and package string are, as query-version and the greeting report them. */
export interface VersionInfo {
  qemu: { major: number; minor: number; micro: number };
  package: string;
}

/** What a command handler can reach: its own connection, the command table, and the daemon's services. */
export interface QmpContext {
  readonly session: SessionState;
  readonly commands: CommandTable<QmpContext>;
  readonly events: readonly EventDef[];
  readonly version: VersionInfo;
  /** Capabilities offered in the greeting. */
  readonly capabilities: readonly string[];
  /** The block graph every command works on. */
  readonly graph: BlockGraph;
  /** Every job, and the listener new jobs report to (events to all monitors). */
  readonly jobs: JobManager;
  readonly jobEvents: BlockJobListener;
  /** The exports and the NBD server. */
  readonly exports: BlockExports;
  /** The QOM tree: objects users created (object-add, --object). */
  readonly objects: ObjectRegistry;
  /**
   * The process's standard output, for what QEMU prints there with printf
   * (bdrv_img_create's "Formatting …" line when a command creates an
   * image); absent in an embedded daemon, which owns no stdout.
   */
  readonly printf?: (text: string) => void;
  /** The machine `blockemu system` stands in for; absent in the storage daemon. */
  readonly machine?: Machine;
  /**
   * Starts the daemon's shutdown. The storage daemon replies to `quit`
   * first; qemu-system tears the block layer down first (its events come
   * before the reply), so then this resolves once that is done.
   */
  quit(): void | Promise<void>;
}

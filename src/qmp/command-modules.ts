/**
 * Which module handles which commands, so the daemon can declare every
 * command (validation, query-commands, query-qmp-schema come from the
 * schema tables, which are light) while loading a handler module — and
 * the block layer, jobs and drivers it pulls in — only when one of its
 * commands is first called. A daemon that only answers qmp_capabilities
 * and quit loads a fraction of blockemu.
 *
 * The order is the order of registration, and so of query-commands.
 * CommandTable.addLazy checks, when a module loads, that it registers
 * exactly the commands listed here.
 */
import type { QmpContext } from './context.js';
import { QDEV_COMMANDS } from './schema/qdev.js';
import type { CommandTable } from './dispatch.js';
import {
  blockDirtyBitmapAdd,
  blockDirtyBitmapClear,
  blockDirtyBitmapDisable,
  blockDirtyBitmapEnable,
  blockDirtyBitmapMerge,
  blockDirtyBitmapRemove,
  xDebugBlockDirtyBitmapSha256,
} from './schema/block-core/bitmaps.js';
import { blockdevCreate } from './schema/block-core/create-options.js';
import { blockdevSnapshot, blockdevSnapshotDeleteInternalSync, blockdevSnapshotInternalSync, blockdevSnapshotSync } from './schema/block-core/snapshot-args.js';
import { blockSetWriteThreshold, queryBlockstats } from './schema/block-core/stats.js';
import { blockCommit, blockStream } from './schema/block-core/stream-commit.js';
import { blockdevAdd, blockdevDel, blockdevReopen, blockResize, changeBackingFileCmd, queryBlock, queryNamedBlockNodes, xBlockdevChange, xBlockdevSetIothread, xDebugQueryBlockGraph } from './schema/block-core.js';
import { blockExportAdd, blockExportDel, nbdServerAdd, nbdServerRemove, nbdServerStart, nbdServerStop, queryBlockExports } from './schema/block-export.js';
import { blockdevBackup, driveBackup } from './schema/backup.js';
import { clockAdvance, queryClock } from './schema/blockemu.js';
import { faultAdd, faultRelease, faultRemove, qmpFaultAdd, queryFaults } from './schema/blockemu-faults.js';
import type { CommandDef } from './schema/command.js';
import { humanMonitorCommand } from './schema/misc.js';
import { blockdevMirror, driveMirror } from './schema/mirror.js';
import { objectAdd, objectDel, qomGet, qomList, qomListProperties, qomListTypes, qomSet } from './schema/qom.js';
import { transaction } from './schema/transaction.js';
import { TRAY_COMMANDS } from './schema/block-tray.js';
import { blockSetIoThrottle } from './schema/block-throttle.js';
import { RUN_STATE_COMMANDS } from './schema/run-state.js';
import { MIGRATION_COMMANDS } from './schema/migration.js';

type Register = (table: CommandTable<QmpContext>) => void;

export interface CommandModule {
  readonly defs: readonly CommandDef[];
  load(): Promise<Register>;
}

/**
 * The handler modules after the ones the daemon loads at once (control, jobs).
 * `as const`: the typed client (typed.ts) reads each command's types from here.
 */
export const COMMAND_MODULES = [
  { defs: [blockdevAdd, blockdevDel, queryNamedBlockNodes, queryBlock], load: async () => (await import('./commands/blockdev.js')).addBlockdevCommands },
  { defs: [changeBackingFileCmd], load: async () => (await import('./commands/backing.js')).addBackingCommands },
  { defs: [blockResize], load: async () => (await import('./commands/resize.js')).addResizeCommands },
  { defs: [blockdevReopen], load: async () => (await import('./commands/reopen.js')).addReopenCommands },
  { defs: [xDebugQueryBlockGraph, xBlockdevSetIothread, xBlockdevChange], load: async () => (await import('./commands/block-graph.js')).addBlockGraphCommands },
  {
    defs: [blockDirtyBitmapAdd, blockDirtyBitmapRemove, blockDirtyBitmapClear, blockDirtyBitmapEnable, blockDirtyBitmapDisable, blockDirtyBitmapMerge, xDebugBlockDirtyBitmapSha256],
    load: async () => (await import('./commands/bitmaps.js')).addBitmapCommands,
  },
  { defs: [humanMonitorCommand], load: async () => (await import('./commands/hmp.js')).addHmpCommands },
  { defs: [blockdevMirror, driveMirror], load: async () => (await import('./commands/mirror.js')).addMirrorCommands },
  { defs: [transaction, blockdevSnapshotSync, blockdevSnapshot, blockdevSnapshotInternalSync, blockdevBackup, driveBackup], load: async () => (await import('./commands/transaction.js')).addTransactionCommands },
  { defs: [blockdevSnapshotDeleteInternalSync], load: async () => (await import('./commands/internal-snapshot.js')).addInternalSnapshotCommands },
  { defs: [queryClock, clockAdvance], load: async () => (await import('./commands/clock.js')).addClockCommands },
  { defs: [faultAdd, faultRemove, faultRelease, qmpFaultAdd, queryFaults], load: async () => (await import('./commands/faults.js')).addFaultCommands },
  { defs: [blockdevCreate], load: async () => (await import('./commands/create.js')).addCreateCommands },
  { defs: [blockStream], load: async () => (await import('./commands/stream.js')).addStreamCommands },
  { defs: [blockCommit], load: async () => (await import('./commands/commit.js')).addCommitCommands },
  {
    defs: [nbdServerStart, nbdServerStop, blockExportAdd, blockExportDel, queryBlockExports, nbdServerAdd, nbdServerRemove],
    load: async () => (await import('./commands/exports.js')).addExportCommands,
  },
  { defs: [qomList, qomGet, qomSet, qomListTypes, qomListProperties, objectAdd, objectDel], load: async () => (await import('./commands/qom.js')).addQomCommands },
  { defs: [queryBlockstats, blockSetWriteThreshold], load: async () => (await import('./commands/block-stats.js')).addBlockStatsCommands },
] as const satisfies readonly CommandModule[];

/**
 * The commands only `blockemu system` serves: the machine's run state.
 * qemu-storage-daemon has no machine, so the daemon's table leaves them
 * out (query-status there is CommandNotFound, as in QEMU).
 */
export const SYSTEM_COMMAND_MODULES = [
  { defs: RUN_STATE_COMMANDS, load: async () => (await import('./commands/run-state.js')).addRunStateCommands },
  { defs: TRAY_COMMANDS, load: async () => (await import('./commands/tray.js')).addTrayCommands },
  { defs: [blockSetIoThrottle], load: async () => (await import('./commands/io-throttle.js')).addIoThrottleCommands },
  { defs: QDEV_COMMANDS, load: async () => (await import('./commands/qdev.js')).addQdevCommands },
  { defs: MIGRATION_COMMANDS, load: async () => (await import('./commands/migration.js')).addMigrationCommands },
] as const satisfies readonly CommandModule[];

/** The parts of qapi/migration.json (7.2) a storage-only machine serves (`blockemu system` only). */
import { command, event } from './command.js';
import { any, array, bool, enumType, int, openArgs, str, struct } from './types.js';

export const MigrationStatus = enumType('MigrationStatus', [
  'none',
  'setup',
  'cancelling',
  'cancelled',
  'active',
  'postcopy-active',
  'postcopy-paused',
  'postcopy-recover',
  'completed',
  'failed',
  'colo',
  'pre-switchover',
  'device',
  'wait-unplug',
]);

/** MigrationCapability, in the schema's order (query-migrate-capabilities lists them so). */
export const MIGRATION_CAPABILITIES = [
  'xbzrle',
  'rdma-pin-all',
  'auto-converge',
  'zero-blocks',
  'compress',
  'events',
  'postcopy-ram',
  'x-colo',
  'release-ram',
  'block',
  'return-path',
  'pause-before-switchover',
  'multifd',
  'dirty-bitmaps',
  'postcopy-blocktime',
  'late-block-activate',
  'x-ignore-shared',
  'validate-uuid',
  'background-snapshot',
  'zero-copy-send',
  'postcopy-preempt',
] as const;

export const MigrationCapability = enumType('MigrationCapability', MIGRATION_CAPABILITIES);
export const MigrationCapabilityStatus = struct('MigrationCapabilityStatus', { capability: MigrationCapability, state: bool });

export const MigrationInfo = struct('MigrationInfo', {
  '*status': MigrationStatus,
  '*total-time': int,
  '*expected-downtime': int,
  '*downtime': int,
  '*setup-time': int,
  '*error-desc': str,
});

export const migrate = command('migrate', { args: { uri: str, '*blk': bool, '*inc': bool, '*detach': bool, '*resume': bool } });
export const migrateIncoming = command('migrate-incoming', { args: { uri: str } });
export const migrateCancel = command('migrate_cancel');
export const migrateStartPostcopy = command('migrate-start-postcopy');
export const queryMigrate = command('query-migrate', { returns: MigrationInfo });
export const migrateSetCapabilities = command('migrate-set-capabilities', { args: { capabilities: array(MigrationCapabilityStatus) } });
export const queryMigrateCapabilities = command('query-migrate-capabilities', { returns: array(MigrationCapabilityStatus) });
/** MigrateSetParameters has dozens of members; the handler checks names and types of the ones blockemu keeps. */
export const migrateSetParameters = command('migrate-set-parameters', { args: openArgs('MigrateSetParameters', { '*max-bandwidth': int, '*downtime-limit': int }) });
export const queryMigrateParameters = command('query-migrate-parameters', { returns: any });

export const MIGRATION_COMMANDS = [
  migrate,
  migrateIncoming,
  migrateCancel,
  migrateStartPostcopy,
  queryMigrate,
  migrateSetCapabilities,
  queryMigrateCapabilities,
  migrateSetParameters,
  queryMigrateParameters,
] as const;

export const migrationEvent = event('MIGRATION', { status: MigrationStatus });
export const migrationPassEvent = event('MIGRATION_PASS', { pass: int });

import type { QmpContext } from '../context.js';
import type { CommandTable } from '../dispatch.js';
import { QmpError } from '../error.js';
import {
  MIGRATION_CAPABILITIES,
  migrate,
  migrateCancel,
  migrateIncoming,
  migrateSetCapabilities,
  migrateSetParameters,
  migrateStartPostcopy,
  queryMigrate,
  queryMigrateCapabilities,
  queryMigrateParameters,
} from '../schema/migration.js';
import { type Migration, MigrationError } from '../../machine/migration.js';

function migration(ctx: QmpContext): Migration {
  const m = ctx.machine?.migration;
  if (!m) throw new QmpError('CommandNotFound', 'The command is only available in blockemu system');
  return m;
}

/** A refusal in QEMU's words, as a GenericError. */
function generic<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof MigrationError) throw new QmpError('GenericError', err.message);
    throw err;
  }
}

/** MigrationParameters' defaults in QEMU 7.2 (migration.c's properties), in the schema's order. */
const DEFAULT_PARAMETERS: ReadonlyArray<[string, unknown]> = [
  ['announce-initial', 50],
  ['announce-max', 550],
  ['announce-rounds', 5],
  ['announce-step', 100],
  ['compress-level', 1],
  ['compress-threads', 8],
  ['compress-wait-thread', true],
  ['decompress-threads', 2],
  ['throttle-trigger-threshold', 50],
  ['cpu-throttle-initial', 20],
  ['cpu-throttle-increment', 10],
  ['cpu-throttle-tailslow', false],
  ['tls-creds', ''],
  ['tls-hostname', ''],
  ['tls-authz', ''],
  ['max-bandwidth', 134217728],
  ['downtime-limit', 300],
  ['x-checkpoint-delay', 20000],
  ['block-incremental', false],
  ['multifd-channels', 2],
  ['xbzrle-cache-size', 67108864],
  ['max-postcopy-bandwidth', 0],
  ['max-cpu-throttle', 99],
  ['multifd-compression', 'none'],
  ['multifd-zlib-level', 1],
  ['multifd-zstd-level', 1],
];

/**
 * query-migrate (fill_source_migration_info / fill_destination_migration_info):
 * the state and its times; no `ram` statistics, as there is no guest RAM.
 */
function migrationInfo(m: Migration): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  // An incoming migration's state is told instead of the outgoing one's (fill_destination_migration_info comes last).
  const incoming: Record<string, unknown> = m.listenAddress ? { 'socket-address': [m.listenAddress] } : {};
  if (m.incomingStatus !== 'none') return { ...incoming, status: m.incomingStatus };
  if (m.listenAddress) return incoming;
  if (m.status === 'none') return out;
  out['status'] = m.status;
  const t = m.times;
  if (t.totalTime !== undefined) out['total-time'] = t.totalTime;
  if (t.downtime !== undefined) out['downtime'] = t.downtime;
  if (t.setupTime !== undefined) out['setup-time'] = t.setupTime;
  if (m.status === 'failed' && m.errorDesc !== undefined) out['error-desc'] = m.errorDesc;
  return out;
}

/** The migration commands of qapi/migration.json a storage-only machine serves. */
export function addMigrationCommands(table: CommandTable<QmpContext>): void {
  table
    .add(migrate, (a, ctx) => generic(() => migration(ctx).start(a.uri, { blk: a.blk ?? false, inc: a.inc ?? false })))
    .add(migrateIncoming, async (a, ctx) => {
      try {
        await migration(ctx).incoming(a.uri);
      } catch (err) {
        if (err instanceof Error && !(err instanceof QmpError)) throw new QmpError('GenericError', err.message);
        throw err;
      }
    })
    .add(migrateCancel, (_a, ctx) => migration(ctx).cancel())
    .add(migrateStartPostcopy, (_a, ctx) => generic(() => migration(ctx).startPostcopy()))
    .add(queryMigrate, (_a, ctx) => migrationInfo(migration(ctx)) as never)
    .add(migrateSetCapabilities, (a, ctx) => generic(() => migration(ctx).setCapabilities(a.capabilities)))
    .add(queryMigrateCapabilities, (_a, ctx) => {
      const m = migration(ctx);
      return MIGRATION_CAPABILITIES.map((capability) => ({ capability, state: m.capabilities.has(capability) }));
    })
    .add(migrateSetParameters, (a, ctx) => {
      const m = migration(ctx);
      const known = new Map(DEFAULT_PARAMETERS);
      for (const [k, v] of Object.entries(a)) {
        const def = known.get(k);
        if (def === undefined) throw new QmpError('GenericError', `Parameter '${k}' is unexpected`);
        if (typeof v !== typeof def) throw new QmpError('GenericError', `Invalid parameter type for '${k}', expected: ${typeof def === 'number' ? 'integer' : typeof def === 'boolean' ? 'boolean' : 'string'}`);
      }
      for (const [k, v] of Object.entries(a)) m.parameters.set(k, v);
    })
    .add(queryMigrateParameters, (_a, ctx) => {
      const m = migration(ctx);
      return Object.fromEntries(DEFAULT_PARAMETERS.map(([k, v]) => [k, m.parameters.get(k) ?? v]));
    });
}

import type { HmpArgs } from './args.js';
import { callQmp, type HmpContext, HmpReportError } from './command.js';

/**
 * `migrate [-d] [-b] [-i] [-r] uri` (hmp_migrate): without -d the monitor
 * waits until the migration has ended, then reports a failure's reason.
 */
export async function migrate(ctx: HmpContext, a: HmpArgs): Promise<void> {
  await callQmp(ctx, 'migrate', { uri: a['uri'], blk: a['blk'] === true, inc: a['inc'] === true, resume: a['resume'] === true });
  if (a['detach'] === true) return;
  await ctx.qmp.machine?.migration?.whenSettled();
  const info = (await callQmp(ctx, 'query-migrate')) as { status?: string; 'error-desc'?: string };
  if (info['error-desc'] !== undefined) throw new HmpReportError(info['error-desc']);
}

/** `info migrate` (hmp_info_migrate): the globals, then the status and its times. */
export async function infoMigrate(ctx: HmpContext): Promise<void> {
  const info = (await callQmp(ctx, 'query-migrate')) as Record<string, unknown>;
  ctx.out('globals:\nstore-global-state: on\nonly-migratable: off\nsend-configuration: on\nsend-section-footer: on\ndecompress-error-check: on\nclear-bitmap-shift: 18\n');
  if (info['status'] === undefined) return;
  const desc = info['status'] === 'failed' && info['error-desc'] !== undefined ? ` (${String(info['error-desc'])})` : '';
  ctx.out(`Migration status: ${String(info['status'])}${desc}\n`);
  ctx.out(`total time: ${Number(info['total-time'] ?? 0)} ms\n`);
  if (info['downtime'] !== undefined) ctx.out(`downtime: ${Number(info['downtime'])} ms\n`);
  if (info['setup-time'] !== undefined) ctx.out(`setup: ${Number(info['setup-time'])} ms\n`);
}

/** `info migrate_capabilities`: one "name: on|off" line each. */
export async function infoMigrateCapabilities(ctx: HmpContext): Promise<void> {
  const caps = (await callQmp(ctx, 'query-migrate-capabilities')) as Array<{ capability: string; state: boolean }>;
  for (const c of caps) ctx.out(`${c.capability}: ${c.state ? 'on' : 'off'}\n`);
}

/** `migrate_set_capability name on|off`. */
export async function migrateSetCapability(ctx: HmpContext, a: HmpArgs): Promise<void> {
  await callQmp(ctx, 'migrate-set-capabilities', { capabilities: [{ capability: a['capability'], state: a['state'] === true }] });
}

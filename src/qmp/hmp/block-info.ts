import { callQmp, type HmpContext } from './command.js';
import type { HmpArgs } from './args.js';

/** query-block's BlockInfo and query-named-block-nodes' BlockDeviceInfo, as far as `info block` reads them. */
interface Inserted {
  file: string;
  'node-name'?: string;
  ro: boolean;
  drv: string;
  encrypted: boolean;
  backing_file?: string;
  backing_file_depth: number;
  detect_zeroes: string;
  cache: { writeback: boolean; direct: boolean; 'no-flush': boolean };
  [k: string]: unknown;
}
interface BlockInfo {
  device: string;
  qdev?: string;
  removable: boolean;
  locked: boolean;
  tray_open?: boolean;
  'io-status'?: string;
  inserted?: Inserted;
}

const THROTTLE = ['bps', 'bps_rd', 'bps_wr', 'bps_max', 'bps_rd_max', 'bps_wr_max', 'iops', 'iops_rd', 'iops_wr', 'iops_max', 'iops_rd_max', 'iops_wr_max', 'iops_size'];

/** print_block_info: one BlockBackend (info) or one node (inserted only). */
function printBlockInfo(out: (s: string) => void, info: BlockInfo | undefined, inserted: Inserted | undefined): void {
  let head: string;
  if (info && info.device !== '') head = info.device + (inserted?.['node-name'] !== undefined ? ` (${inserted['node-name']})` : '');
  else head = inserted?.['node-name'] ?? info?.qdev ?? '<anonymous>';
  out(inserted ? `${head}: ${inserted.file} (${inserted.drv}${inserted.ro ? ', read-only' : ''}${inserted.encrypted ? ', encrypted' : ''})\n` : `${head}: [not inserted]\n`);
  if (info) {
    if (info.qdev !== undefined) out(`    Attached to:      ${info.qdev}\n`);
    if (info['io-status'] !== undefined && info['io-status'] !== 'ok') out(`    I/O status:       ${info['io-status']}\n`);
    if (info.removable) out(`    Removable device: ${info.locked ? '' : 'not '}locked, tray ${info.tray_open ? 'open' : 'closed'}\n`);
  }
  if (!inserted) return;
  const c = inserted.cache;
  out(`    Cache mode:       ${c.writeback ? 'writeback' : 'writethrough'}${c.direct ? ', direct' : ''}${c['no-flush'] ? ', ignore flushes' : ''}\n`);
  if (inserted.backing_file !== undefined) out(`    Backing file:     ${inserted.backing_file} (chain depth: ${inserted.backing_file_depth})\n`);
  if (inserted.detect_zeroes !== 'off') out(`    Detect zeroes:    ${inserted.detect_zeroes}\n`);
  if (THROTTLE.slice(0, 3).concat(THROTTLE.slice(6, 9)).some((k) => Number(inserted[k] ?? 0) !== 0)) {
    out(`    I/O throttling:   ${THROTTLE.map((k) => `${k}=${Number(inserted[k] ?? 0)}`).join(' ')} group=${String(inserted['group'] ?? '')}\n`);
  }
}

/** `info block [-n] [-v] [device]` (hmp_info_block): the BlockBackends, or with -n or an unmatched name the named nodes. */
export async function infoBlock(ctx: HmpContext, a: HmpArgs): Promise<void> {
  const device = a['device'] as string | undefined;
  const nodes = a['nodes'] === true;
  let printed = false;
  if (!nodes) {
    const list = (await callQmp(ctx, 'query-block')) as BlockInfo[];
    for (const [i, info] of list.entries()) {
      if (device !== undefined && device !== info.device) continue;
      if (i > 0) ctx.out('\n');
      printBlockInfo(ctx.out, info, info.inserted);
      printed = true;
    }
  }
  if ((device === undefined && !nodes) || printed) return;
  const named = (await callQmp(ctx, 'query-named-block-nodes')) as Inserted[];
  for (const [i, n] of named.entries()) {
    if (device !== undefined && device !== n['node-name']) continue;
    if (i > 0) ctx.out('\n');
    printBlockInfo(ctx.out, undefined, n);
  }
}

const STAT_FIELDS = ['rd_bytes', 'wr_bytes', 'rd_operations', 'wr_operations', 'flush_operations', 'wr_total_time_ns', 'rd_total_time_ns', 'flush_total_time_ns', 'rd_merged', 'wr_merged', 'idle_time_ns'];

/** `info blockstats`: one line per BlockBackend with a name (QEMU 7.2's layout). */
export async function infoBlockstats(ctx: HmpContext): Promise<void> {
  const list = (await callQmp(ctx, 'query-blockstats')) as Array<{ device?: string; stats: Record<string, number> }>;
  for (const s of list) {
    if (s.device === undefined) continue;
    ctx.out(`${s.device}: ${STAT_FIELDS.map((k) => `${k}=${s.stats[k] ?? 0}`).join(' ')}\n`);
  }
}

/** `info block-jobs` (hmp_info_block_jobs). */
export async function infoBlockJobs(ctx: HmpContext): Promise<void> {
  const list = (await callQmp(ctx, 'query-block-jobs')) as Array<{ type: string; device: string; offset: number; len: number; speed: number }>;
  if (list.length === 0) return ctx.out('No active jobs\n');
  for (const j of list) {
    const what = j.type === 'stream' ? `Streaming device ${j.device}` : `Type ${j.type}, device ${j.device}`;
    ctx.out(`${what}: Completed ${j.offset} of ${j.len} bytes, speed limit ${j.speed} bytes/s\n`);
  }
}

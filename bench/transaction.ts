/**
 * `npm run bench -- transaction`: how long a `transaction` that starts 2, 8
 * and 32 backups takes to answer, on blockemu's daemon and on
 * qemu-storage-daemon started with the same command line (null-co sources
 * and targets, so the disks cost nothing and the figure is the
 * transaction's own work: validation, job creation, copy-before-write
 * set-up, start). The jobs are sync=none (they idle) and are cancelled
 * before the next round. Median over rounds, ratio blockemu/qemu.
 */
import { join } from 'node:path';
import { type BenchContext, intFlag } from './lib/context.js';
import { hasQsd, type LineClient, startDaemon } from './lib/qmp-daemon.js';
import { median, renderTable } from './lib/stats.js';
import { withTempDir } from './lib/tmp.js';

export const description = 'latency of a transaction starting 2, 8 and 32 backups, blockemu vs qemu-storage-daemon';
export const flags = { rounds: 'transactions per size and daemon (default 20)' };

const SIZES = [2, 8, 32];
const MAX = Math.max(...SIZES);

function daemonArgs(): string[] {
  const args: string[] = [];
  for (let i = 0; i < MAX; i++) args.push('--blockdev', `driver=null-co,node-name=s${i},size=67108864`, '--blockdev', `driver=null-co,node-name=t${i},size=67108864`);
  return args;
}

/** One transaction of n backups; returns its reply time in µs, after cancelling the jobs again. */
async function round(c: LineClient, n: number, tag: string): Promise<number> {
  const actions = Array.from({ length: n }, (_, i) => ({ type: 'blockdev-backup', data: { 'job-id': `${tag}-${i}`, device: `s${i}`, target: `t${i}`, sync: 'none' } }));
  const request = JSON.stringify({ execute: 'transaction', arguments: { actions } });
  const t0 = process.hrtime.bigint();
  const reply = await c.call(request);
  const us = Number(process.hrtime.bigint() - t0) / 1000;
  if (!reply.startsWith('{"return": {}')) throw new Error(`transaction failed: ${reply}`);
  for (let i = 0; i < n; i++) {
    await c.call(JSON.stringify({ execute: 'block-job-cancel', arguments: { device: `${tag}-${i}` } }));
    await c.waitEvent(`"id": "${tag}-${i}"`, '"status": "null"');
  }
  c.events.splice(0);
  return us;
}

export async function run(ctx: BenchContext): Promise<void> {
  if (!hasQsd()) {
    console.log('transaction: qemu-storage-daemon is not installed (apt-get install qemu-system-common); nothing to compare against');
    return;
  }
  const rounds = intFlag(ctx, 'rounds', 20);
  await withTempDir(async (dir) => {
    const times: Record<string, Record<number, number[]>> = { blockemu: {}, qemu: {} };
    for (let r = 0; r < ctx.runs; r++) {
      for (const who of r % 2 === 0 ? (['blockemu', 'qemu'] as const) : (['qemu', 'blockemu'] as const)) {
        const d = await startDaemon(who, daemonArgs(), join(dir, `${who}-${r}.sock`));
        try {
          for (const n of SIZES) {
            // One warm-up round per size.
            await round(d.client, n, `w${n}`);
            for (let k = 0; k < rounds; k++) ((times[who]![n] ??= []) as number[]).push(await round(d.client, n, `r${r}-${n}-${k}`));
          }
        } finally {
          await d.stop();
        }
      }
    }
    console.log(`\ntransaction latency (reply time of a transaction of N blockdev-backup actions, sync=none, null-co nodes), median of ${rounds} × ${ctx.runs}\n`);
    const rows = [['backups', 'blockemu (µs)', 'qemu-storage-daemon (µs)', 'ratio blockemu/qemu']];
    for (const n of SIZES) {
      const b = median(times['blockemu']![n]!);
      const q = median(times['qemu']![n]!);
      rows.push([String(n), b.toFixed(0), q.toFixed(0), (b / q).toFixed(2)]);
    }
    console.log(renderTable(rows, new Set([1, 2, 3])));
  });
}

/**
 * `npm run bench -- sparse`: whether a backup's memory grows with the
 * image's virtual size. Two qcow2 images, 1 GiB and 16 GiB (`--sizes`, in
 * GiB), each with the same data: 64 extents of 64 KiB spread evenly over
 * the image, nothing else (so only the virtual size differs; with data in
 * proportion to the size, the more data a daemon copies the more its
 * heap grows, qsd's too), get a full
 * drive-backup to a new qcow2 in a fresh daemon; reported per daemon: the
 * peak RSS (VmHWM of the daemon and its children, read after
 * BLOCK_JOB_COMPLETED) and the time. The target is that the large image's
 * peak is no higher than the small one's. Daemons take turns; medians
 * over `--runs`.
 */
import { spawn } from 'node:child_process';
import { unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type BenchContext } from './lib/context.js';
import { daemons as daemonsOf, syncDisks, withDaemon } from './lib/daemon-session.js';
import { treeMemory } from './lib/proc-memory.js';
import { qemuImg } from './lib/qemu.js';
import { hasQsd } from './lib/qmp-daemon.js';
import { median, MiB, renderTable } from './lib/stats.js';
import { withTempDir } from './lib/tmp.js';

export const description = 'peak RSS of a full backup of a sparse 16 GiB qcow2 against a 1 GiB one, blockemu vs qemu-storage-daemon';
export const flags = { sizes: 'comma-separated image sizes in GiB (default 1,16)' };

const EXTENTS = 64;

async function sparseImage(dir: string, gib: number): Promise<string> {
  const path = join(dir, `sparse-${gib}G.qcow2`);
  await qemuImg(['create', '-q', '-f', 'qcow2', path, `${gib}G`]);
  const cmds = join(dir, `sparse-${gib}G.cmds`);
  const lines: string[] = [];
  const stride = (gib * 1024 * MiB) / EXTENTS;
  for (let i = 0; i < EXTENTS; i++) lines.push(`write -P ${i + 1} ${i * stride} 64k`);
  await writeFile(cmds, lines.join('\n') + '\n');
  await new Promise<void>((res, rej) => {
    const p = spawn('sh', ['-c', `qemu-io -f qcow2 ${path} < ${cmds} > /dev/null`], { stdio: 'inherit' });
    p.once('exit', (c) => (c === 0 ? res() : rej(new Error(`qemu-io exited ${c}`))));
  });
  return path;
}

export async function run(ctx: BenchContext): Promise<void> {
  if (!hasQsd()) {
    console.log('sparse: qemu-storage-daemon is not installed; nothing to compare against');
    return;
  }
  const sizes = (ctx.flags.get('sizes') ?? '1,16').split(',').map(Number);
  if (sizes.some((s) => !Number.isSafeInteger(s) || s < 1)) throw new Error(`--sizes wants positive integers (GiB), got '${ctx.flags.get('sizes')}'`);
  const ds = daemonsOf(ctx);
  await withTempDir(async (dir) => {
    const rows: string[][] = [['image', 'data', 'peak RSS blockemu', 'qsd', 'time blockemu', 'qsd', 'blockemu/qsd time']];
    const peaks = new Map<string, number>();
    for (const gib of sizes) {
      const image = await sparseImage(dir, gib);
      const res: Record<string, Array<{ peakMiB: number; seconds: number }>> = { blockemu: [], qsd: [] };
      for (let r = 0; r < ctx.runs; r++) {
        for (const d of r % 2 === 0 ? ds : [...ds].reverse()) {
          const target = join(dir, `target-${d.name}.qcow2`);
          await unlink(target).catch(() => undefined);
          syncDisks();
          res[d.name]!.push(
            await withDaemon(d, dir, image, 'qcow2', async (q, proc) => {
              const t0 = performance.now();
              await q.call('drive-backup', { 'job-id': 'b', device: 'disk0', target, format: 'qcow2', sync: 'full' });
              const done = await q.event('BLOCK_JOB_COMPLETED');
              const seconds = (performance.now() - t0) / 1000;
              if (done.error) throw new Error(`${d.name}: backup failed: ${String(done.error)}`);
              return { seconds, peakMiB: (await treeMemory([proc.pid!])).hwmKiB / 1024 };
            }),
          );
        }
      }
      const m = (who: string, k: 'peakMiB' | 'seconds') => median(res[who]!.map((x) => x[k]));
      for (const who of ['blockemu', 'qsd']) peaks.set(`${who}-${gib}`, m(who, 'peakMiB'));
      rows.push([
        `${gib} GiB`,
        `${(EXTENTS * 64) / 1024} MiB`,
        `${m('blockemu', 'peakMiB').toFixed(1)} MiB`,
        `${m('qsd', 'peakMiB').toFixed(1)} MiB`,
        `${m('blockemu', 'seconds').toFixed(2)} s`,
        `${m('qsd', 'seconds').toFixed(2)} s`,
        (m('blockemu', 'seconds') / m('qsd', 'seconds')).toFixed(2),
      ]);
      await unlink(image);
    }
    console.log(`\nfull drive-backup of a sparse qcow2 (${EXTENTS} extents of 64 KiB spread over it) to a new qcow2, fresh daemon each; ${ctx.runs} runs, medians\n`);
    console.log(renderTable(rows, new Set([1, 2, 3, 4, 5, 6])));
    if (sizes.length >= 2) {
      const [a, b] = [sizes[0]!, sizes[sizes.length - 1]!];
      for (const who of ['blockemu', 'qsd']) {
        const ratio = peaks.get(`${who}-${b}`)! / peaks.get(`${who}-${a}`)!;
        console.log(`${who}: peak RSS ${b} GiB / ${a} GiB = ${ratio.toFixed(2)}${who === 'blockemu' ? ` (target ≤ 1.00 within noise: ${ratio <= 1.05 ? 'met' : 'NOT met'})` : ''}`);
      }
    }
  });
}

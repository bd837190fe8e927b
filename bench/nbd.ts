/**
 * `npm run bench -- nbd`: the NBD server's throughput, blockemu's daemon vs
 * qemu-storage-daemon exporting the same 1 GiB image with the same command
 * line. The client is QEMU's own (`qemu-img bench` on an nbd+unix URI), so
 * both servers see identical request streams: 1 MiB sequential reads and
 * writes and 4 KiB scattered writes, 16 requests in flight (qemu-img
 * bench's -d), and 4 KiB writes one at a time (latency), over raw and
 * qcow2 images. qemu-img bench times itself from
 * the first request to the last reply. Peak RSS of each daemon is read
 * from /proc after its runs.
 */
import { join } from 'node:path';
import { type BenchContext, intFlag } from './lib/context.js';
import { hasQemuImg, qemuImg, qemuImgBench } from './lib/qemu.js';
import { hasQsd, startDaemon } from './lib/qmp-daemon.js';
import { fmtSeconds, median, renderTable } from './lib/stats.js';
import { withTempDir } from './lib/tmp.js';

export const description = 'NBD export throughput (qemu-img bench as client), blockemu vs qemu-storage-daemon';
export const flags = { size: 'image size in MiB (default 1024)' };

interface Workload {
  name: string;
  args: (sizeMiB: number) => string[];
}

const WORKLOADS: Workload[] = [
  { name: 'seq read 1M', args: (s) => ['-c', String(s), '-s', '1M', '-d', '16'] },
  { name: 'seq write 1M', args: (s) => ['-w', '-c', String(s), '-s', '1M', '-d', '16'] },
  // 32768 writes 67 blocks apart, wrapping around the image: scattered, and enough of them that start-up costs vanish.
  { name: 'scattered write 4K', args: () => ['-w', '-c', '32768', '-s', '4K', '-S', String(67 * 4096), '-d', '16'] },
  { name: 'scattered write 4K, depth 1', args: () => ['-w', '-c', '8192', '-s', '4K', '-S', String(67 * 4096), '-d', '1'] },
];

export async function run(ctx: BenchContext): Promise<void> {
  if (!hasQsd() || !hasQemuImg()) {
    console.log('nbd: qemu-storage-daemon and qemu-img are needed (apt-get install qemu-utils qemu-system-common); nothing to compare against');
    return;
  }
  const sizeMiB = intFlag(ctx, 'size', 1024);
  await withTempDir(async (dir) => {
    const rows = [['workload', 'format', 'blockemu', 'qsd', 'blockemu/qsd', 'RSS blockemu', 'RSS qsd']];
    for (const format of ['raw', 'qcow2'] as const) {
      const img = join(dir, `disk.${format}`);
      await qemuImg(['create', '-q', '-f', format, img, `${sizeMiB}M`]);
      // Data everywhere, so reads are reads of data on both sides.
      await qemuImg(['bench', '-q', '-w', '-f', format, '-c', String(sizeMiB), '-s', '1M', '-d', '16', '--pattern=90', img]);
      const times: Record<'blockemu' | 'qemu', Record<string, number[]>> = { blockemu: {}, qemu: {} };
      const rss = { blockemu: 0, qemu: 0 };
      for (let r = 0; r < ctx.runs; r++) {
        for (const who of r % 2 === 0 ? (['blockemu', 'qemu'] as const) : (['qemu', 'blockemu'] as const)) {
          const nbd = join(dir, `${who}.nbd`);
          const d = await startDaemon(
            who,
            [
              '--blockdev', `driver=file,node-name=f,filename=${img}`,
              '--blockdev', `driver=${format},node-name=disk,file=f`,
              '--nbd-server', `addr.type=unix,addr.path=${nbd}`,
              '--export', 'type=nbd,id=e0,node-name=disk,name=exp,writable=on',
            ],
            join(dir, `${who}.qmp`),
          );
          try {
            const uri = `nbd+unix:///exp?socket=${nbd}`;
            for (const w of WORKLOADS) ((times[who][w.name] ??= []) as number[]).push(await qemuImgBench(['-f', 'raw', ...w.args(sizeMiB), uri]));
            rss[who] = Math.max(rss[who], d.peakRssMiB());
          } finally {
            await d.stop();
          }
        }
      }
      for (const w of WORKLOADS) {
        const b = median(times.blockemu[w.name]!);
        const q = median(times.qemu[w.name]!);
        rows.push([w.name, format, fmtSeconds(b), fmtSeconds(q), (b / q).toFixed(2), `${rss.blockemu.toFixed(0)} MiB`, `${rss.qemu.toFixed(0)} MiB`]);
      }
    }
    console.log(`\nNBD export of a ${sizeMiB} MiB image over a Unix socket, qemu-img bench as client (16 in flight), medians of ${ctx.runs}\n`);
    console.log(renderTable(rows, new Set([2, 3, 4, 5, 6])));
  });
}

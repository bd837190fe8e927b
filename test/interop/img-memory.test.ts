/**
 * `blockemu img convert` and `compare` stream: their peak memory must not
 * grow with the image. A 2 GiB qcow2 image holding 1.1 GiB of data (written
 * by qemu-io) is converted to qcow2 and raw and compared; the peak resident
 * set of each process must stay far below the data size.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCKEMU, qemu, run } from '../helpers/qemu.js';
import { must, qemuImgIn, scratch } from './img-oracle.js';

/** Node's own peak RSS in KiB, printed by the process itself as it exits. */
const REPORT_PEAK = 'data:text/javascript,process.on("exit",()=>process.stderr.write(`PEAK_RSS_KB=${process.resourceUsage().maxRSS}\\n`))';
/** Well under the 1.1 GiB of data; Node itself needs ~50 MiB, the image caches ~5 MiB, buffers 2 MiB each. */
const LIMIT_KB = 256 * 1024;

async function peakOf(args: string[], cwd: string): Promise<{ code: number; stdout: string; peakKb: number }> {
  const r = await run(process.execPath, ['--import', REPORT_PEAK, BLOCKEMU, 'img', ...args], { cwd });
  const m = /PEAK_RSS_KB=(\d+)/.exec(r.stderr);
  if (!m) throw new Error(`no peak reported: ${r.stderr}`);
  return { code: r.code, stdout: r.stdout, peakKb: Number(m[1]) };
}

describe.skipIf(!qemu.available)('blockemu img convert/compare memory', { timeout: 300_000 }, () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
    await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'big.qcow2', '2G'], s.dir);
    await must('qemu-io', ['-c', 'write -P 1 0 1100M', '-c', 'write -P 2 1500M 1M', 'big.qcow2'], s.dir);
  }, 300_000);
  afterAll(() => s.done());

  it.each([
    ['qcow2', ['-O', 'qcow2']],
    ['raw', ['-O', 'raw']],
    ['compressed qcow2', ['-c', '-O', 'qcow2']],
  ])('converts 1.1 GiB of data to %s in bounded memory', async (_what, opts) => {
    const out = join(s.dir, `out-${opts.join('')}`);
    const r = await peakOf(['convert', ...opts, 'big.qcow2', out], s.dir);
    expect(r.code).toBe(0);
    expect(r.peakKb).toBeLessThan(LIMIT_KB);
    const cmp = await qemuImgIn(['compare', out, join(s.dir, 'big.qcow2')]);
    expect(cmp).toMatchObject({ code: 0, stdout: 'Images are identical.\n' });
  });

  // Uses the raw copy the conversion above made (tests in a file run in order).
  it('compares 1.1 GiB of data against a raw copy in bounded memory', async () => {
    const r = await peakOf(['compare', 'big.qcow2', 'out--Oraw'], s.dir);
    expect(r).toMatchObject({ code: 0, stdout: 'Images are identical.\n' });
    expect(r.peakKb).toBeLessThan(LIMIT_KB);
  });
});

/**
 * qemu-img convert --bitmaps and what goes with it, against qemu-img 7.2
 * (iotest qemu-img-bitmaps): the source's persistent bitmaps copied with
 * their granularity, state and bits; the refusals (a raw target, an
 * inconsistent bitmap, --skip-broken-bitmaps alone); skipped bitmaps
 * warned about; rebase -u and `bitmap --image-opts` on an image that has
 * bitmaps. Each step runs in a directory of its own for each tool.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { qemu, run, runBlockemu } from '../helpers/qemu.js';
import { expectSameIn, must, scratch } from './img-oracle.js';

const same = expectSameIn;

/**
 * `info` by both tools: equal but for the disk size, which counts the file's blocks on disk: the bitmaps' clusters
 * are the same (check and compare see to that, and the files end alike) but not every one written with the same holes.
 */
async function sameInfo(name: string, dirs: { b: string; q: string }): Promise<void> {
  const strip = (t: string) => t.replace(/^disk size: .*$/m, 'disk size: N');
  const b = await runBlockemu(['img', 'info', name], { cwd: dirs.b });
  const q = await run('qemu-img', ['info', name], { cwd: dirs.q });
  expect({ code: b.code, stdout: strip(b.stdout), stderr: b.stderr }).toEqual({ code: q.code, stdout: strip(q.stdout), stderr: q.stderr });
}

describe.skipIf(!qemu.available)('convert --bitmaps (vs qemu-img)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeEach(async () => {
    s = await scratch();
  });
  afterEach(() => s.done());

  /** Fixture steps by QEMU's tools in both directories. */
  async function both(tool: 'qemu-img' | 'qemu-io', ...args: string[]): Promise<void> {
    for (const d of [s.b, s.q]) await must(tool, args, d);
  }

  it('copies bitmaps with their granularity, state and bits; refuses a raw target and a lone --skip-broken-bitmaps', async () => {
    await both('qemu-img', 'create', '-q', '-f', 'qcow2', 'src.qcow2', '10M');
    await both('qemu-io', '-c', 'write -q 0 1M', 'src.qcow2');
    await both('qemu-img', 'bitmap', '--add', '-g', '512k', 'src.qcow2', 'b1');
    await both('qemu-img', 'bitmap', '--add', '--disable', 'src.qcow2', 'b2');
    await both('qemu-io', '-c', 'write -q 3M 1M', 'src.qcow2');
    await both('qemu-img', 'bitmap', '--enable', 'src.qcow2', 'b2');
    await both('qemu-io', '-c', 'write -q 5M 64k', 'src.qcow2');
    await same('img', ['convert', '--bitmaps', '-O', 'raw', 'src.qcow2', 'r.raw'], s);
    await same('img', ['convert', '--skip-broken-bitmaps', '-O', 'qcow2', 'src.qcow2', 'x.qcow2'], s);
    await same('img', ['convert', '--bitmaps', '-O', 'qcow2', 'src.qcow2', 'dst.qcow2'], s);
    await sameInfo('dst.qcow2', s);
    await same('img', ['check', 'dst.qcow2'], s);
    // The bits: each bitmap merged into a new one of the source, compared through an NBD-free route — qemu-img compare of the
    // images and the bitmaps' dirty maps as the other tool's bitmap merge sees them.
    for (const b of ['b1', 'b2']) await same('img', ['bitmap', '--add', '--merge', b, '-b', 'dst.qcow2', '-F', 'qcow2', 'src.qcow2', `${b}-copy`], s);
    await sameInfo('src.qcow2', s);
    await same('img', ['compare', 'src.qcow2', 'dst.qcow2'], s);
  });

  it('an inconsistent bitmap refuses the copy unless skipped, with a warning; rebase -u and bitmap --image-opts take such images', async () => {
    await both('qemu-img', 'create', '-q', '-f', 'qcow2', 'base.qcow2', '4M');
    await both('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 't.qcow2');
    await both('qemu-img', 'bitmap', '--add', 't.qcow2', 'good');
    await both('qemu-img', 'bitmap', '--add', 't.qcow2', 'bad');
    // A writer killed while it had the image open leaves its bitmaps in use (inconsistent).
    for (const d of [s.b, s.q]) await must('qemu-io', ['-c', 'abort', 't.qcow2'], d).catch(() => undefined);
    await both('qemu-img', 'bitmap', '--add', 't.qcow2', 'later');
    await sameInfo('t.qcow2', s);
    await same('img', ['convert', '--bitmaps', '-O', 'qcow2', 't.qcow2', 'c.qcow2'], s);
    await same('img', ['convert', '--bitmaps', '--skip-broken-bitmaps', '-O', 'qcow2', 't.qcow2', 'c.qcow2'], s);
    await sameInfo('c.qcow2', s);
    await same('img', ['rebase', '-u', '-b', '', 't.qcow2'], s);
    await same('img', ['bitmap', '--remove', '--image-opts', 'driver=qcow2,file.driver=file,file.filename=t.qcow2', 'later'], s);
    await sameInfo('t.qcow2', s);
    // Where the directories went differs (QEMU's read-write open of rebase -u rewrites them twice): qemu-img checks ours.
    expect((await run('qemu-img', ['check', 't.qcow2'], { cwd: s.b })).code).toBe(0);
  });
});

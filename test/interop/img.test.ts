/**
 * `blockemu img create` and `blockemu img info` against qemu-img 7.2.
 * Error messages: blockemu uses qemu-img's text under the program name
 * "blockemu img" (see img-oracle.ts for the one normalisation applied).
 */
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemu, run } from '../helpers/qemu.js';
import { expectSame, must, qemuImgIn, scratch } from './img-oracle.js';

/** The FILE operand of a create command line (the first operand that is not an option's value). */
function imageArg(args: string[]): string {
  for (let i = 0; i < args.length; i++) {
    if (['-f', '-b', '-F', '-o'].includes(args[i]!)) i++;
    else if (args[i] !== '-q') return args[i]!;
  }
  throw new Error(`no file in ${args.join(' ')}`);
}

describe.skipIf(!qemu.available)('blockemu img create (vs qemu-img create)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
    await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'base.qcow2', '64M'], s.dir);
    await must('qemu-img', ['create', '-q', '-f', 'raw', 'base.raw', '1M'], s.dir);
    await must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'missing.qcow2', '-F', 'qcow2', '-u', 'broken.qcow2', '1M'], s.dir);
  });
  afterAll(() => s.done());

  /** Creates with both tools, compares their output, then has qemu-img judge both images. */
  async function createBoth(args: string[]): Promise<void> {
    const { b } = await expectSame(['create', ...args], s);
    if (b.code !== 0) return;
    const file = imageArg(args);
    const infoB = await qemuImgIn(['info', '--output=json', file], s.b);
    const infoQ = await qemuImgIn(['info', '--output=json', file], s.q);
    expect(infoB.code).toBe(0);
    // actual-size is how the host file system allocated the file, not part of the image.
    const { "actual-size": _b, ...jb } = JSON.parse(infoB.stdout) as Record<string, unknown>;
    const { "actual-size": _q, ...jq } = JSON.parse(infoQ.stdout) as Record<string, unknown>;
    expect(jb).toEqual(jq);
    if (jb.format === 'qcow2') {
      const check = await qemuImgIn(['check', file], s.b);
      expect(check.stdout).toMatch(/^No errors were found on the image\./);
      expect(check.code).toBe(0);
    }
    const cmp = await qemuImgIn(['compare', join(s.b, file), join(s.q, file)]);
    expect(cmp.stdout).toBe('Images are identical.\n');
  }

  it.each([
    [['-f', 'raw', 'a.raw', '1M']],
    [['a.raw', '1M']],
    [['-f', 'raw', 'a.raw', '0']],
    [['-f', 'raw', 'a.raw', '1.5G']],
    [['-f', 'raw', 'a.raw', '1000']],
    [['-f', 'raw', 'a.raw', '1b']],
    [['-f', 'qcow2', 'a.qcow2', '64M']],
    [['-f', 'qcow2', 'a.qcow2', '0']],
    [['-f', 'qcow2', 'a.qcow2', '1000']],
    [['-f', 'qcow2', 'a.qcow2', '1.5k']],
    [['-f', 'qcow2', 'a.qcow2', '0x100']],
    [['-f', 'qcow2', 'a.qcow2', '+1M']],
    [['-f', 'qcow2', 'a.qcow2', ' 5M']],
    [['-f', 'qcow2', 'a.qcow2', '1b']],
    [['-f', 'qcow2', 'a.qcow2', '1T']],
    [['-f', 'qcow2', '-q', 'a.qcow2', '1G']],
    [['-f', 'qcow2', '-o', 'cluster_size=4096,compat=0.10', 'a.qcow2', '1G']],
    [['-f', 'qcow2', '-o', 'cluster_size=4k', '-o', 'refcount_bits=64,lazy_refcounts=on', 'a.qcow2', '1G']],
    [['-f', 'qcow2', '-o', 'cluster_size=4k,cluster_size=8k', 'a.qcow2', '1M']],
    [['-f', 'qcow2', '-o', 'compat=v3,refcount_bits=1', 'a.qcow2', '1M']],
    [['-f', 'qcow2', '-o', 'cluster_size=512', 'a.qcow2', '100M']],
    [['-f', 'qcow2', '-o', 'cluster_size=2M', 'a.qcow2', '10G']],
    [['-f', 'qcow2', '-o', 'size=2M', 'a.qcow2']],
    [['-f', 'qcow2', '-o', 'preallocation=off', 'a.qcow2', '1M']],
    [['-f', 'raw', '-o', 'preallocation=off,size=1k', 'a.raw']],
    [['-f', 'qcow2', 'a.qcow2', '1M', '-o', 'cluster_size=4k']],
    // A zero fraction needs no unit (iotest 049); getopt's order: options after the operands too.
    [['-f', 'qcow2', 'a.qcow2', '1024.0']],
    [['-f', 'qcow2', 'a.qcow2', '1024.0b']],
    [['-f', 'qcow2', '-o', 'size=1024.0', 'a.qcow2']],
    [['-f', 'qcow2', '-o', 'cluster_size=0.5k', 'a.qcow2', '64M']],
    [['a.qcow2', '-f', 'qcow2', '1M', '-q']],
    [['-f', 'qcow2', '-o', 'encryption=off', 'a.qcow2', '1M']],
  ])('creates like qemu-img: %j', (args) => createBoth(args));

  it.each([
    [['-f', 'qcow2', '-b', '../base.qcow2', '-F', 'qcow2', 'c.qcow2']],
    [['-f', 'qcow2', '-b', '../base.qcow2', '-F', 'qcow2', 'c.qcow2', '128M']],
    [['-f', 'qcow2', '-b', '../base.raw', '-F', 'raw', 'c.qcow2']],
    [['-f', 'qcow2', '-o', 'backing_file=../base.qcow2,backing_fmt=qcow2', 'c.qcow2']],
    [['-f', 'qcow2', '-o', 'compat=1.1,backing_file=../base.qcow2,backing_fmt=qcow2,cluster_size=512', 'c.qcow2']],
    [['-f', 'qcow2', '-o', 'compat=0.10', '-b', '../base.qcow2', '-F', 'qcow2', 'c.qcow2', '1G']],
  ])('creates with a backing file like qemu-img: %j', (args) => createBoth(args));

  it('takes the size of a backing file that is itself an overlay', async () => {
    await createBoth(['-f', 'qcow2', '-b', 'c.qcow2', '-F', 'qcow2', 'top.qcow2']);
  });

  it.each([
    // sizes
    [['-f', 'raw', 'x.raw', '1Q']],
    [['-f', 'raw', 'x.raw', '1.5']],
    [['-f', 'raw', 'x.raw', '1e3']],
    [['-f', 'raw', 'x.raw', '1k5']],
    [['-f', 'raw', 'x.raw', '.5k']],
    [['-f', 'raw', 'x.raw', '1.5b']],
    [['-f', 'raw', 'x.raw', '-5']],
    [['-f', 'raw', 'x.raw', '--', '-1024']],
    [['-f', 'qcow2', '-o', 'size=-1k', 'x.qcow2']],
    [['-f', 'raw', 'x.raw', '9000P']],
    [['-f', 'raw', 'x.raw', '20E']],
    [['-f', 'qcow2', 'x.qcow2', '1E']],
    [['-f', 'qcow2', '-o', 'cluster_size=512', 'x.qcow2', '1P']],
    [['-f', 'raw', 'x.raw', '1E']],
    [['-f', 'raw', 'x.raw']],
    [['-f', 'qcow2', 'x.qcow2']],
    [['-f', 'qcow2', '-o', 'size=2M', 'x.qcow2', '3M']],
    [['-f', 'qcow2', '-o', 'size=20E', 'x.qcow2']],
    // usage
    [[]],
    [['-f']],
    [['-x', 'x.raw', '1M']],
    [['--bogus', 'x.raw', '1M']],
    [['-f', 'raw', 'x.raw', '1G', 'extra']],
    [['-f', 'vmdk2', 'x.raw', '1G']],
    // options
    [['-f', 'qcow2', '-o', 'foo=bar', 'x.qcow2', '1G']],
    [['-f', 'raw', '-o', 'cluster_size=4096', 'x.raw', '1G']],
    [['-f', 'qcow2', '-o', ',', 'x.qcow2', '1G']],
    [['-f', 'qcow2', '-o', 'cluster_size', 'x.qcow2', '1G']],
    [['-f', 'qcow2', '-o', 'cluster_size=abc', 'x.qcow2', '1G']],
    [['-f', 'qcow2', '-o', 'cluster_size=1000', 'x.qcow2', '1G']],
    [['-f', 'qcow2', '-o', 'cluster_size=4M', 'x.qcow2', '1G']],
    [['-f', 'qcow2', '-o', 'cluster_size=256', 'x.qcow2', '1G']],
    [['-f', 'qcow2', '-o', 'refcount_bits=3', 'x.qcow2', '1G']],
    [['-f', 'qcow2', '-o', 'refcount_bits=128', 'x.qcow2', '1G']],
    [['-f', 'qcow2', '-o', 'refcount_bits=abc', 'x.qcow2', '1G']],
    [['-f', 'qcow2', '-o', 'lazy_refcounts=yes,cluster_size=0x1000,refcount_bits=016', 'x.qcow2', '1M']],
    [['-f', 'qcow2', '-o', 'lazy_refcounts=maybe', 'x.qcow2', '1G']],
    [['-f', 'qcow2', '-o', 'compat=1.2', 'x.qcow2', '1M']],
    [['-f', 'qcow2', '-o', 'compat=0.10,refcount_bits=8', 'x.qcow2', '1G']],
    [['-f', 'qcow2', '-o', 'compat=0.10,lazy_refcounts=on', 'x.qcow2', '1G']],
    // backing files
    [['-f', 'qcow2', '-b', 'nonexist.qcow2', '-F', 'qcow2', 'x.qcow2']],
    [['-f', 'qcow2', '-b', 'nonexist.qcow2', '-F', 'qcow2', 'x.qcow2', '1G']],
    [['-f', 'qcow2', '-b', '../base.qcow2', 'x.qcow2']],
    [['-f', 'qcow2', '-b', '../base.raw', 'x.qcow2']],
    [['-f', 'qcow2', '-b', '../base.raw', '-F', 'qcow2', 'x.qcow2']],
    [['-f', 'qcow2', '-b', '../base.raw', '-F', 'vmdkx', 'x.qcow2']],
    [['-f', 'qcow2', '-b', '../broken.qcow2', '-F', 'qcow2', 'x.qcow2']],
    [['-f', 'qcow2', '-F', 'raw', 'x.qcow2', '3M']],
    [['-f', 'raw', '-b', '../base.raw', '-F', 'raw', 'x.raw']],
    [['-f', 'qcow2', '-b', '', '-F', 'raw', 'x.qcow2', '1M']],
    [['-f', 'qcow2', '-b', 'x.qcow2', '-F', 'qcow2', 'x.qcow2']],
    // the host
    [['-f', 'qcow2', '/nonexistent-dir/x.qcow2', '1M']],
    [['-f', 'raw', '/nonexistent-dir/x.raw', '1M']],
    [['-f', 'raw', '.', '1M']],
  ])('fails like qemu-img: %j', async (args) => {
    const { b } = await expectSame(['create', ...args], s);
    expect(b.code).not.toBe(0);
  });
});

describe.skipIf(!qemu.available)('blockemu img info (vs qemu-img info)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
    const q = (...a: string[]) => must('qemu-img', a, s.dir);
    const io = (...a: string[]) => must('qemu-io', a, s.dir);
    await q('create', '-q', '-f', 'raw', 'r.raw', '1M');
    await writeFile(join(s.dir, 'odd.raw'), new Uint8Array(1023488));
    await writeFile(join(s.dir, 'tie.raw'), new Uint8Array(1179648)); // 1.125 MiB: printf rounds the tie to even, "1.12"
    await writeFile(join(s.dir, 'empty.raw'), new Uint8Array(0));
    await q('create', '-q', '-f', 'qcow2', 'b.qcow2', '64M');
    await q('create', '-q', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 'c.qcow2');
    await io('-c', 'write -P 1 0 64k', '-c', 'write -z 1M 64k', 'c.qcow2');
    await q('create', '-q', '-f', 'qcow2', '-b', 'r.raw', '-F', 'raw', 'd.qcow2', '2M');
    await q('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10,cluster_size=4k', 'v2.qcow2', '1T');
    await q('create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on,refcount_bits=1', 'l.qcow2', '1k');
    await q('create', '-q', '-f', 'qcow2', 'sub-b.qcow2', '1500M');
    await q('create', '-q', '-f', 'qcow2', '-b', join(s.dir, 'sub-b.qcow2'), '-F', 'qcow2', 'abs.qcow2');
    await q('create', '-q', '-f', 'qcow2', '-b', 'missing.qcow2', '-F', 'qcow2', '-u', 'orphan.qcow2', '1M');
    await q('create', '-q', '-f', 'qcow2', '-b', 'orphan.qcow2', '-F', 'qcow2', '-u', 'orphan-top.qcow2', '1M');
    // Persistent bitmaps: one recording, one disabled (an empty flags list), one left in use by a process that died.
    await q('create', '-q', '-f', 'qcow2', 'bm.qcow2', '4M');
    await q('bitmap', '--add', 'bm.qcow2', 'rec');
    await q('bitmap', '--add', '-g', '131072', '--disable', 'bm.qcow2', 'off');
    await q('create', '-q', '-f', 'qcow2', 'bm-used.qcow2', '4M');
    await q('bitmap', '--add', 'bm-used.qcow2', 'rec');
    await run('qemu-io', ['-c', 'write 0 64k', '-c', 'abort', 'bm-used.qcow2'], { cwd: s.dir });
    // The corrupt bit (incompatible feature bit 1, header byte 79), set by hand.
    await q('create', '-q', '-f', 'qcow2', 'corrupt.qcow2', '1M');
    const fh = await open(join(s.dir, 'corrupt.qcow2'), 'r+');
    await fh.write(new Uint8Array([2]), 0, 1, 79);
    await fh.close();
  });
  afterAll(() => s.done());

  it.each([
    [['r.raw']],
    [['odd.raw']],
    [['tie.raw']],
    [['empty.raw']],
    [['b.qcow2']],
    [['c.qcow2']],
    [['d.qcow2']],
    [['v2.qcow2']],
    [['l.qcow2']],
    [['abs.qcow2']],
    [['orphan.qcow2']],
    [['corrupt.qcow2']],
    [['bm.qcow2']],
    [['bm-used.qcow2']],
    [['-f', 'raw', 'c.qcow2']],
    [['-U', 'c.qcow2']],
    [['--backing-chain', 'c.qcow2']],
    [['--backing-chain', 'd.qcow2']],
    [['--backing-chain', 'abs.qcow2']],
  ])('prints what qemu-img prints, human and JSON: %j', async (args) => {
    const { b } = await expectSame(['info', ...args], s.dir);
    expect(b.code).toBe(0);
    await expectSame(['info', '--output', 'json', ...args], s.dir);
    await expectSame(['info', '--output=human', ...args], s.dir);
  });

  it('names backing files relative to the directory the image was named with', async () => {
    await must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', '../b.qcow2', '-F', 'qcow2', 'rel.qcow2'], s.b);
    await expectSame(['info', 'b/rel.qcow2'], s.dir);
    await expectSame(['info', '--output=json', 'b/rel.qcow2'], s.dir);
    await expectSame(['info', '--backing-chain', 'b/rel.qcow2'], s.dir);
    await expectSame(['info', '--backing-chain', '--output=json', 'b/rel.qcow2'], s.dir);
  });

  it('reports the dirty flag of an image left open with lazy refcounts', async () => {
    await must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on', '-b', 'b.qcow2', '-F', 'qcow2', 'dirty.qcow2'], s.dir);
    // qemu-io's "abort" ends the process before the clean close that would clear the bit.
    await run('qemu-io', ['-c', 'write 0 64k', '-c', 'abort', 'dirty.qcow2'], { cwd: s.dir });
    const { b } = await expectSame(['info', 'dirty.qcow2'], s.dir);
    expect(b.stdout).toContain('cleanly shut down: no');
    await expectSame(['info', '--output=json', 'dirty.qcow2'], s.dir);
  });

  it.each([
    [['nonexist']],
    [['-f', 'qcow2', 'r.raw']],
    [['-f', 'bogus', 'r.raw']],
    [['--output', 'xml', 'r.raw']],
    [[]],
    [['r.raw', 'b.qcow2']],
    [['-x', 'r.raw']],
    [['--foo', 'r.raw']],
    [['-f']],
    [['--backing-chain', 'orphan.qcow2']],
    [['--backing-chain', 'orphan-top.qcow2']],
    [['.']],
  ])('fails like qemu-img: %j', async (args) => {
    const { b } = await expectSame(['info', ...args], s.dir);
    expect(b.code).not.toBe(0);
  });
});

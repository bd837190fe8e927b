/**
 * `blockemu img` on names that open a node graph (`json:{…}`,
 * `blkdebug:conf:file`) against qemu-img 7.2: the same output for info,
 * blkdebug's injected errors reaching compare and commit with qemu-img's
 * messages and exit codes, and commit emptying the top image as QEMU does
 * (make_completely_empty): the same file afterwards, and after an injected
 * failure at each of its steps the same damage, repaired the same way.
 */
import { execFile, spawn } from 'node:child_process';
import { copyFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemu, run, runBlockemu } from '../helpers/qemu.js';
import { expectSame, must, qemuImgIn, scratch } from './img-oracle.js';

const BLOCKEMU = join(import.meta.dirname, '..', '..', 'dist', 'bin', 'blockemu.js');

/** A command line through sh with stdout and stderr into one pipe (2>&1), as QEMU's iotests read them. */
async function merged(cmd: string, cwd: string): Promise<{ out: string }> {
  const r = await promisify(execFile)('sh', ['-c', `${cmd} 2>&1; echo "exit $?"`], { cwd, env: { ...process.env, BLOCKEMU_TOOL_NAMES: 'qemu' } });
  return { out: r.stdout };
}

describe.skipIf(!qemu.available)('blockemu img on node-graph names (vs qemu-img)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
    const q = (...a: string[]) => must('qemu-img', a, s.dir);
    const io = (...a: string[]) => must('qemu-io', a, s.dir);
    await q('create', '-q', '-f', 'qcow2', 'a.qcow2', '64M');
    await io('-c', 'write -P 7 512 512', '-c', 'write -P 9 1M 64k', 'a.qcow2');
    await q('create', '-q', '-f', 'qcow2', 'empty.qcow2', '64M');
    await q('create', '-q', '-f', 'qcow2', 'zero-size.qcow2', '0');
    await writeFile(join(s.dir, 'read-error.conf'), '[inject-error]\nevent = "read_aio"\nerrno = "5"\nonce = "off"\n');
  });
  afterAll(() => s.done());

  it.each([
    [['info', 'json:{"driver":"qcow2","file":{"driver":"file","filename":"a.qcow2"}}']],
    [['info', '--output=json', 'json:{"driver":"qcow2","file":{"driver":"file","filename":"a.qcow2"}}']],
    [['info', 'blkdebug:read-error.conf:a.qcow2']],
    [['info', '--output=json', 'blkdebug::a.qcow2']],
    [['compare', 'blkdebug::a.qcow2', 'a.qcow2']],
    [['compare', 'json:{"driver":"qcow2","file":{"driver":"file","filename":"a.qcow2"}}', 'empty.qcow2']],
    [['map', '--output=json', 'blkdebug::a.qcow2']],
    [['check', 'blkdebug::a.qcow2']],
    [['info', 'blkdebug:a.qcow2']],
  ])('%j prints what qemu-img prints', async (args) => {
    await expectSame(args, s.dir);
  });

  it('a raw image over a protocol node answers block status from the node, as QEMU raw passes it down (NBD export, null-co)', async () => {
    const sock = join(s.dir, 'nbd.sock');
    const server = spawn('qemu-nbd', ['-f', 'qcow2', '-r', '-t', '-k', sock, join(s.dir, 'a.qcow2')], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 100 && !(await stat(sock).catch(() => undefined)); i++) await new Promise((r) => setTimeout(r, 50));
      const uri = `nbd+unix:///?socket=${sock}`;
      await expectSame(['map', '--output=json', uri], s.dir);
      await expectSame(['info', uri], s.dir);
      await expectSame(['compare', uri, 'a.qcow2'], s.dir);
    } finally {
      server.kill();
    }
    await expectSame(['map', '--output=json', 'json:{"driver":"null-co","read-zeroes":true,"size":1048576}'], s.dir);
    // Without read-zeroes null-co's blocks are neither data nor zeroes, so not allocated.
    await expectSame(['map', '--output=json', 'null-co://'], s.dir);
  });

  it.each([
    ['a.qcow2', 'empty.qcow2'],
    ['empty.qcow2', 'a.qcow2'],
    ['a.qcow2', 'zero-size.qcow2'],
  ])('compare of blkdebug:<read error>:%s with %s fails as qemu-img does (exit 4, the offset and the name)', async (x, y) => {
    const { b } = await expectSame(['compare', `blkdebug:read-error.conf:${x}`, y], s.dir);
    // Only a side with data is read: an empty one reads as zeroes without a request.
    expect(b.code).toBe(x === 'a.qcow2' ? 4 : 1);
    await expectSame(['compare', y, `blkdebug:read-error.conf:${x}`], s.dir);
  });

  it("orders stdout after stderr as a C program's buffered stdout does (074: the warning after the read error)", async () => {
    const cmd = (tool: string) => `${tool} compare blkdebug:read-error.conf:a.qcow2 zero-size.qcow2`;
    const b = await merged(cmd(`node ${BLOCKEMU} img`), s.dir);
    const q = await merged(cmd('qemu-img'), s.dir);
    expect(b.out).toBe(q.out);
    expect(q.out.indexOf('Warning')).toBeGreaterThan(q.out.indexOf('Error while reading'));
  });

  /** blkdebug above the qcow2 format node of `file`, failing block status and reads at the given sectors (iotest 251's source). */
  const failing = (file: string, status: number[], reads: number[]) =>
    `json:${JSON.stringify({
      driver: 'blkdebug',
      image: { driver: 'qcow2', file: { driver: 'file', filename: file } },
      'inject-error': [
        ...status.map((sector) => ({ event: 'none', iotype: 'block-status', errno: 5, sector })),
        ...reads.map((sector) => ({ event: 'none', iotype: 'read', errno: 5, sector })),
      ],
    })}`;

  it('convert --salvage copies what reads, warns once per unreadable sector and block status, and zeroes what does not', async () => {
    for (const d of [s.b, s.q]) await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'src.qcow2', '8M'], d);
    for (const d of [s.b, s.q]) await must('qemu-io', ['-c', 'write -P 42 0 8M', 'src.qcow2'], d);
    const src = failing('src.qcow2', [2048 + 16, 4097], [4096 - 128, 4097, 6000, 6001, 6002]);
    const { b } = await expectSame(['convert', '--salvage', '-O', 'qcow2', src, 'out.qcow2'], { b: s.b, q: s.q });
    expect(b.stderr.match(/warning: error while reading offset/g)).toHaveLength(5);
    expect((await qemuImgIn(['compare', join(s.b, 'out.qcow2'), join(s.q, 'out.qcow2')])).stdout).toBe('Images are identical.\n');
    // -q: the same copy, no warnings; without --salvage: the first failure ends it.
    await expectSame(['convert', '-q', '--salvage', '-O', 'qcow2', src, 'quiet.qcow2'], { b: s.b, q: s.q });
    await expectSame(['convert', '-O', 'qcow2', failing('src.qcow2', [], [6000]), 'failed.qcow2'], { b: s.b, q: s.q });
  });

  it('map and compare take --image-opts with blkdebug above the format, as qemu-img does', async () => {
    const opts = 'driver=blkdebug,image.driver=qcow2,image.file.driver=file,image.file.filename=a.qcow2,align=4k';
    await expectSame(['map', '--image-opts', opts], s.dir);
    await expectSame(['map', '--output=json', '--image-opts', opts], s.dir);
    await expectSame(['compare', '--image-opts', opts, 'driver=qcow2,file.filename=a.qcow2'], s.dir);
    await expectSame(['compare', '--image-opts', '-f', 'qcow2', opts, opts], s.dir);
    await expectSame(['map', '--image-opts', 'driver=blkdebug,image.driver=qcow2,image.file.driver=file,image.file.filename=nonexistent.qcow2'], s.dir);
  });

  it("write -z through blkdebug's write-zero limits leaves the same map as qemu-io (short pieces written as zero data)", async () => {
    for (const d of [s.b, s.q]) await must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=1M', 'lim.qcow2', '128M'], d);
    const limits = 'driver=blkdebug,image.driver=qcow2,align=512,opt-write-zero=15M,max-write-zero=15M';
    const cmds = ['-c', `open -o ${limits} blkdebug::lim.qcow2`, '-c', 'write -z 32M 32M', '-c', 'write -z 70M 1M'];
    const ob = await runBlockemu(['io', ...cmds], { cwd: s.b });
    const oq = await run('qemu-io', cmds, { cwd: s.q });
    expect(ob.code).toBe(oq.code);
    expect(await qemuImgIn(['map', '--output=json', 'lim.qcow2'], s.b)).toEqual(await qemuImgIn(['map', '--output=json', 'lim.qcow2'], s.q));
  });

  it('snapshot -d with an error injected when clusters are freed fails as qemu-img does and leaks the same clusters (217)', async () => {
    for (const d of [s.b, s.q]) {
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'sn.qcow2', '64M'], d);
      await must('qemu-io', ['-c', 'write 0 64k', 'sn.qcow2'], d);
      await must('qemu-img', ['snapshot', '-c', 'foo', 'sn.qcow2'], d);
      await writeFile(join(d, 'free.conf'), '[inject-error]\nevent = "cluster_free"\nerrno = "5"\n');
    }
    const { b } = await expectSame(['snapshot', '-d', 'foo', 'blkdebug:free.conf:sn.qcow2'], { b: s.b, q: s.q });
    expect(b.stderr).toContain('Failed to free the cluster and L1 table: Input/output error');
    const cb = await qemuImgIn(['check', 'sn.qcow2'], s.b);
    expect(cb).toEqual(await qemuImgIn(['check', 'sn.qcow2'], s.q));
    expect(cb.code).toBe(3);
  });

  describe('commit empties the top as QEMU does', () => {
    async function chain(): Promise<void> {
      for (const d of [s.b, s.q]) {
        for (const f of await readdir(d)) await rm(join(d, f));
        await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'base.qcow2', '64M'], d);
        await must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2'], d);
        await must('qemu-io', ['-c', 'write -P 3 0 64k', '-c', 'write -P 4 10M 1M', 'top.qcow2'], d);
      }
    }

    /** What qemu-img check says of the top in b/ and q/, and their sizes: equal. */
    async function sameTop(): Promise<void> {
      const cb = await qemuImgIn(['check', 'top.qcow2'], s.b);
      const cq = await qemuImgIn(['check', 'top.qcow2'], s.q);
      expect(cb).toEqual(cq);
      expect((await stat(join(s.b, 'top.qcow2'))).size).toBe((await stat(join(s.q, 'top.qcow2'))).size);
      // Where the base's clusters lie is left out: QEMU's commit (a mirror job) writes in parallel, in no fixed order.
      const map = async (d: string) => (await qemuImgIn(['map', '--output=json', 'top.qcow2'], d)).stdout.replace(/, "offset": \d+/g, '');
      expect(await map(s.b)).toBe(await map(s.q));
    }

    it('a plain commit leaves the same emptied file (header, refcounts, L1 in four clusters)', async () => {
      await chain();
      await expectSame(['commit', 'top.qcow2'], { b: s.b, q: s.q });
      await sameTop();
      expect((await stat(join(s.b, 'top.qcow2'))).size).toBe(4 * 65536);
      expect((await qemuImgIn(['compare', join(s.b, 'base.qcow2'), join(s.q, 'base.qcow2')])).code).toBe(0);
    });

    it.each(['l1_update', 'empty_image_prepare', 'reftable_update', 'refblock_alloc'])(
      'an error injected at %s fails as qemu-img fails, and the next read-write open repairs the same damage',
      async (event) => {
        await chain();
        for (const d of [s.b, s.q]) await writeFile(join(d, 'bd.conf'), `[inject-error]\nevent = "${event}"\n`);
        const { b } = await expectSame(['commit', 'blkdebug:bd.conf:top.qcow2'], { b: s.b, q: s.q });
        expect(b.stderr).toContain('Failed to empty blkdebug:bd.conf:top.qcow2: Input/output error');
        // A read-write open repairs a dirty image and prints what it repaired: blockemu io on a copy of blockemu's
        // result, qemu-io on QEMU's, then qemu-io on blockemu's own (so the repaired files compare too).
        await copyFile(join(s.b, 'top.qcow2'), join(s.b, 'copy.qcow2'));
        const ob = await runBlockemu(['io', '-c', 'close', 'copy.qcow2'], { cwd: s.b });
        const oq = await run('qemu-io', ['-c', 'close', 'top.qcow2'], { cwd: s.q });
        expect({ ...ob, stderr: ob.stderr.replaceAll('blockemu io', 'qemu-io') }).toEqual(oq);
        expect(await run('qemu-io', ['-c', 'close', 'top.qcow2'], { cwd: s.b })).toEqual(oq);
        await sameTop();
      },
    );
  });
});

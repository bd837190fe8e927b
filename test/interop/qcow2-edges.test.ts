/**
 * qcow2 edges QEMU's iotests look at, against qemu-io and qemu-img 7.2: a
 * write over normal and preallocated zero clusters is one request (066:
 * blkdebug fails a second write_aio), amend to compat=1.1 rewrites
 * snapshot entries that lack version 3's extra data (261), and an
 * unaligned refcount block offset marks the image corrupt (305).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { qemu, run, runBlockemu } from '../helpers/qemu.js';
import { expectSameIn, must, scratch } from './img-oracle.js';

/** Steps by the QEMU tools in both directories (fixtures). */
async function both(s: { b: string; q: string }, tool: 'qemu-img' | 'qemu-io', ...args: string[]): Promise<void> {
  for (const d of [s.b, s.q]) await must(tool, args, d);
}

/** Bytes patched into a file in both directories (iotests' poke_file). */
async function poke(s: { b: string; q: string }, file: string, patch: (buf: Buffer) => Buffer): Promise<void> {
  for (const d of [s.b, s.q]) await writeFile(join(d, file), patch(await readFile(join(d, file))));
}

/** The header's incompatible feature bits (bit 0: dirty). */
async function incompatible(path: string): Promise<bigint> {
  return (await readFile(path)).readBigUInt64BE(72);
}

/** The first snapshot table entry's extra data size. */
async function firstSnapshotExtra(path: string): Promise<number> {
  const buf = await readFile(path);
  return buf.readUInt32BE(Number(buf.readBigUInt64BE(64)) + 36);
}

describe.skipIf(!qemu.available)('qcow2 edges (vs qemu-io and qemu-img)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeEach(async () => {
    s = await scratch();
  });
  afterEach(() => s.done());

  it('a write over data, a preallocated zero cluster and data goes out as one request (iotest 066)', async () => {
    await both(s, 'qemu-img', 'create', '-q', '-f', 'qcow2', 't.qcow2', '192k');
    await both(s, 'qemu-io', '-c', 'write -q -P 42 0 192k', '-c', 'write -q -z 64k 64k', 't.qcow2');
    // The first write_aio moves blkdebug to state 2, where any further one fails.
    const json =
      "json:{'driver':'qcow2','file':{'driver':'blkdebug','image.filename':'t.qcow2','set-state':[{'event':'write_aio','new_state':2}],'inject-error':[{'event':'write_aio','state':2}]}}";
    await expectSameIn('io', ['-c', 'write -q -P 43 0 192k', json], s);
    await expectSameIn('img', ['map', '--output=json', 't.qcow2'], s);
    await expectSameIn('img', ['check', 't.qcow2'], s);
    await expectSameIn('io', ['-c', 'read -q -P 43 0 192k', 't.qcow2'], s);
    // A partial write keeps the normal clusters' data around it and zeroes the rest of the zero one.
    await both(s, 'qemu-io', '-c', 'write -q -z 64k 64k', 't.qcow2');
    await expectSameIn('io', ['-c', 'write -q -P 44 32k 64k', 't.qcow2'], s);
    await expectSameIn('io', ['-c', 'read -q -P 43 0 32k', '-c', 'read -q -P 44 32k 64k', '-c', 'read -q -P 0 96k 32k', '-c', 'read -q -P 43 128k 64k', 't.qcow2'], s);
    await expectSameIn('img', ['map', '--output=json', 't.qcow2'], s);
  });

  it('amend -o compat=1.1 writes snapshot entries anew with the 24 bytes of extra data version 3 wants (iotest 261)', async () => {
    await both(s, 'qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', 't.qcow2', '64M');
    await both(s, 'qemu-img', 'snapshot', '-c', 'sn0', 't.qcow2');
    // A version 2 entry without extra data, as older writers left them.
    await poke(s, 't.qcow2', (buf) => {
      const at = Number(buf.readBigUInt64BE(64));
      const extra = buf.readUInt32BE(at + 36);
      const rest = buf.subarray(at + 40 + extra, at + 40 + extra + buf.readUInt16BE(at + 12) + buf.readUInt16BE(at + 14));
      const out = Buffer.from(buf);
      out.writeUInt32BE(0, at + 36);
      Buffer.from(rest).copy(out, at + 40);
      return out;
    });
    expect(await firstSnapshotExtra(join(s.b, 't.qcow2'))).toBe(0);
    await expectSameIn('img', ['amend', '-o', 'compat=1.1', 't.qcow2'], s);
    expect(await firstSnapshotExtra(join(s.b, 't.qcow2'))).toBe(await firstSnapshotExtra(join(s.q, 't.qcow2')));
    expect(await firstSnapshotExtra(join(s.b, 't.qcow2'))).toBe(24);
    // (Not snapshot -l: each directory's snapshot was taken at its own second.)
    await expectSameIn('img', ['check', 't.qcow2'], s);
    // Too much extra data: the open fails with the repair hint, the check says it too, and a repair drops it.
    await poke(s, 't.qcow2', (buf) => {
      const out = Buffer.from(buf);
      out.writeUInt32BE(0x10000, Number(buf.readBigUInt64BE(64)) + 36);
      return out;
    });
    await expectSameIn('img', ['info', 't.qcow2'], s);
    await expectSameIn('img', ['check', 't.qcow2'], s);
  });

  it('a refcount table entry off a cluster boundary marks the image corrupt when an allocation needs it (iotest 305)', async () => {
    await both(s, 'qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'refcount_bits=64,cluster_size=1k', 't.qcow2', '1M');
    await both(s, 'qemu-io', '-c', 'write -q 0 124k', '-c', 'discard -q 121k 1k', '-c', 'discard -q 123k 1k', 't.qcow2');
    await poke(s, 't.qcow2', (buf) => {
      const out = Buffer.from(buf);
      out[Number(buf.readBigUInt64BE(48)) + 14] = 0x06;
      return out;
    });
    const r = await expectSameIn('io', ['-c', 'write -q 121k 3k', 't.qcow2'], s);
    expect(r.stderr).toContain('Marking image as corrupt: Refblock offset 0x20600 unaligned (reftable index: 0x1)');
    await expectSameIn('img', ['info', 't.qcow2'], s);
  });

  it('lazy refcounts: a crash leaves the image dirty with the data clusters uncounted, a clean close leaves it clean (iotests 039, 061)', async () => {
    await both(s, 'qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'compat=1.1,lazy_refcounts=on', 't.qcow2', '128M');
    await expectSameIn('io', ['-c', 'write -q -P 0x5a 0 512', 't.qcow2'], s);
    expect(await incompatible(join(s.b, 't.qcow2'))).toBe(0n);
    await expectSameIn('img', ['check', 't.qcow2'], s);
    await expectSameIn('io', ['-c', 'write -q -P 0x5a 1M 128k', '-c', 'flush', '-c', 'sigraise 9', 't.qcow2'], s);
    expect(await incompatible(join(s.b, 't.qcow2'))).toBe(await incompatible(join(s.q, 't.qcow2')));
    expect(await incompatible(join(s.b, 't.qcow2'))).toBe(1n);
    await expectSameIn('img', ['check', 't.qcow2'], s);
    await expectSameIn('io', ['-r', '-c', 'read -q -P 0x5a 1M 128k', 't.qcow2'], s);
    await expectSameIn('img', ['check', '-r', 'all', 't.qcow2'], s);
    expect(await incompatible(join(s.b, 't.qcow2'))).toBe(0n);
    await expectSameIn('io', ['-c', 'read -q -P 0x5a 0 512', '-c', 'read -q -P 0x5a 1M 128k', 't.qcow2'], s);
  });

  it('a downgrade expands the zero clusters of snapshot tables too, reporting each L1 entry of every table (iotest 061)', async () => {
    await both(s, 'qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'compat=1.1', 't.qcow2', '64M');
    await both(s, 'qemu-io', '-c', 'write -q -z 0 128k', 't.qcow2');
    await both(s, 'qemu-img', 'snapshot', '-c', 'foo', 't.qcow2');
    await both(s, 'qemu-io', '-c', 'write -q -P 0x2a 0 128k', 't.qcow2');
    await expectSameIn('img', ['amend', '-o', 'compat=0.10', 't.qcow2'], s);
    await expectSameIn('img', ['check', 't.qcow2'], s);
    await expectSameIn('io', ['-c', 'read -q -P 0x2a 0 128k', 't.qcow2'], s);
    await expectSameIn('img', ['snapshot', '-a', 'foo', 't.qcow2'], s);
    await expectSameIn('img', ['check', 't.qcow2'], s);
    await expectSameIn('io', ['-c', 'read -q -P 0 0 128k', 't.qcow2'], s);
    // A table shared by the active L1 and the snapshot's, and the progress over both tables.
    await both(s, 'qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'compat=1.1', 'p.qcow2', '4G');
    await both(s, 'qemu-io', '-c', 'write -q -z 0 128k', '-c', 'write -q 1G 64k', '-c', 'write -q 3G 64k', 'p.qcow2');
    await both(s, 'qemu-img', 'snapshot', '-c', 'foo', 'p.qcow2');
    await expectSameIn('img', ['amend', '-p', '-o', 'compat=0.10', 'p.qcow2'], s);
    await expectSameIn('img', ['check', 'p.qcow2'], s);
    await expectSameIn('img', ['map', '--output=json', 'p.qcow2'], s);
  });

  it("a downgrade keeps a snapshot's data that the active table's zero cluster shares (QEMU 7.2 overwrites it with zeroes)", async () => {
    await both(s, 'qemu-img', 'create', '-q', '-f', 'qcow2', 't.qcow2', '1M');
    await both(s, 'qemu-io', '-c', 'write -q -P 7 0 64k', 't.qcow2');
    await both(s, 'qemu-img', 'snapshot', '-c', 'sn', 't.qcow2');
    await both(s, 'qemu-io', '-c', 'write -q -z 0 64k', 't.qcow2');
    const b = await runBlockemu(['img', 'amend', '-o', 'compat=0.10', 't.qcow2'], { cwd: s.b });
    expect(b).toEqual({ code: 0, stdout: '', stderr: '' });
    await must('qemu-img', ['amend', '-o', 'compat=0.10', 't.qcow2'], s.q);
    for (const d of [s.b, s.q]) await must('qemu-img', ['snapshot', '-a', 'sn', 't.qcow2'], d);
    // blockemu's file, judged by QEMU's tools: the snapshot's data is there and the image is consistent.
    expect((await run('qemu-io', ['-c', 'read -q -P 7 0 64k', 't.qcow2'], { cwd: s.b })).stdout).toBe('');
    expect((await run('qemu-img', ['check', 't.qcow2'], { cwd: s.b })).code).toBe(0);
    // QEMU's own downgrade wrote zeroes into the cluster the snapshot reads.
    expect((await run('qemu-io', ['-c', 'read -q -P 7 0 64k', 't.qcow2'], { cwd: s.q })).stdout).toContain('Pattern verification failed');
  });

  it("a snapshot over an L2 entry pointing far past the file fails with the errno QEMU's refcount update gives (iotest 080)", async () => {
    for (const entry of ['bfffffffffff0000', '800000ffffff0000']) {
      await both(s, 'qemu-img', 'create', '-q', '-f', 'qcow2', 't.qcow2', '64M');
      await both(s, 'qemu-io', '-c', 'write -q 0 512', 't.qcow2');
      await poke(s, 't.qcow2', (buf) => {
        const out = Buffer.from(buf);
        Buffer.from(entry, 'hex').copy(out, 0x40000);
        return out;
      });
      const r = await expectSameIn('img', ['snapshot', '-c', 'test', 't.qcow2'], s);
      expect(r.stderr).toMatch(/-27 \(File too large\)|-11 \(Resource temporarily unavailable\)/);
    }
  });

  it.each([
    ['offset', 0, '0000000000400200'],
    ['size', 8, '10000000'],
  ])('a downgrade refuses a snapshot L1 table whose %s is invalid, after the active table, as QEMU does (iotest 080)', async (_what, at, bytes) => {
    await both(s, 'qemu-img', 'create', '-q', '-f', 'qcow2', 't.qcow2', '64M');
    await both(s, 'qemu-io', '-c', 'write -q 0 512', 't.qcow2');
    await both(s, 'qemu-img', 'snapshot', '-c', 'test', 't.qcow2');
    await poke(s, 't.qcow2', (buf) => {
      const out = Buffer.from(buf);
      Buffer.from(bytes, 'hex').copy(out, Number(buf.readBigUInt64BE(64)) + at);
      return out;
    });
    await expectSameIn('img', ['amend', '-o', 'compat=0.10', 't.qcow2'], s);
    await expectSameIn('img', ['snapshot', '-a', 'test', 't.qcow2'], s);
    await expectSameIn('img', ['snapshot', '-d', 'test', 't.qcow2'], s);
    await expectSameIn('img', ['convert', '-l', 'test', 't.qcow2', 'snap.raw'], s);
    await expectSameIn('img', ['check', 't.qcow2'], s);
  });

  /**
   * An image with a snapshot whose active L2 table and first data cluster
   * are copies of the snapshot's (COPIED), that data cluster's entry then
   * pointed at metadata: the snapshot table, the snapshot's L1 table, or
   * the snapshot's L2 table.
   */
  async function entryIntoMetadata(what: string): Promise<void> {
    await both(s, 'qemu-img', 'create', '-q', '-f', 'qcow2', 't.qcow2', '64M');
    await both(s, 'qemu-io', '-c', 'write -q -P 1 0 64k', 't.qcow2');
    await both(s, 'qemu-img', 'snapshot', '-c', 'sn', 't.qcow2');
    await both(s, 'qemu-io', '-c', 'write -q -P 2 0 64k', 't.qcow2');
    await poke(s, 't.qcow2', (buf) => {
      const out = Buffer.from(buf);
      const l2 = Number(buf.readBigUInt64BE(Number(buf.readBigUInt64BE(40))) & 0x00fffffffffffe00n);
      const table = Number(buf.readBigUInt64BE(64));
      const snapL1 = Number(buf.readBigUInt64BE(table));
      const target = what === 'snapshot table' ? table : what === 'inactive L1 table' ? snapL1 : Number(buf.readBigUInt64BE(snapL1) & 0x00fffffffffffe00n);
      out.writeBigUInt64BE(BigInt(target) | (1n << 63n), l2);
      return out;
    });
  }

  it.each(['inactive L1 table', 'snapshot table'])('a data cluster entry pointing into the %s: the write is refused and the image marked corrupt, as QEMU does', async (what) => {
    await entryIntoMetadata(what);
    const r = await expectSameIn('io', ['-c', 'write -q -P 3 0 64k', 't.qcow2'], s);
    expect(r.stderr).toContain(`Preventing invalid write on metadata (overlaps with ${what})`);
    // Both files marked corrupt (incompatible bit 1), the snapshot's tables intact for QEMU's check.
    for (const d of [s.b, s.q]) expect((await incompatible(join(d, 't.qcow2'))) & 2n).toBe(2n);
    await expectSameIn('img', ['check', 't.qcow2'], s);
  });

  it.each([
    ['inactive L1 table', 'overlap-check=constant'],
    ['inactive L1 table', 'overlap-check.inactive-l1=off'],
    ['inactive L1 table', 'overlap-check=none,overlap-check.inactive-l1=on'],
    ['inactive L2 table', 'overlap-check=cached'],
    ['inactive L2 table', 'overlap-check=all'],
    ['inactive L2 table', 'overlap-check.inactive-l2=on'],
    ['inactive L2 table', 'overlap-check=all,overlap-check.inactive-l2=off'],
  ])('a data cluster entry pointing into the %s, opened with %s: the overlap check looks at what the option says', async (what, option) => {
    await entryIntoMetadata(what);
    const r = await expectSameIn('io', ['-c', `open -o ${option} t.qcow2`, '-c', 'write -q -P 3 0 64k'], s);
    const refused = !/constant|inactive-l1=off|=cached|inactive-l2=off/.test(option);
    expect(r.stderr.includes(`Preventing invalid write on metadata (overlaps with ${what})`)).toBe(refused);
  });

  it('the compress filter writes whole clusters compressed, completing partial ones from the image (iotest 214)', async () => {
    await both(s, 'qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=64k', 't.qcow2', '2M');
    await expectSameIn('io', ['-c', 'write -q -P 0xbb 0 224k', '--image-opts', 'driver=compress,file.driver=qcow2,file.file.driver=file,file.file.filename=t.qcow2'], s);
    const json = "json:{'driver': 'compress', 'file': {'driver': 'qcow2', 'file': {'driver': 'file', 'filename': 't.qcow2'}}}";
    await expectSameIn('io', ['-c', 'write -q -P 0xcc 272k 224k', '-c', 'read -q -P 0xbb 0 224k', '-c', 'read -q -P 0 224k 48k', '-c', 'read -q -P 0xcc 272k 224k', json], s);
    await expectSameIn('img', ['check', '--output=json', 't.qcow2'], s);
    await expectSameIn('img', ['map', '--output=json', 't.qcow2'], s);
    // Over a format that cannot compress, the filter refuses to open.
    await both(s, 'qemu-img', 'create', '-q', '-f', 'raw', 'r.raw', '1M');
    await expectSameIn('io', ['-c', 'write -q 0 64k', '--image-opts', 'driver=compress,file.driver=raw,file.file.driver=file,file.file.filename=r.raw'], s);
  });

  it('a cleared refcount table entry: the new refcount block would land on the table, the image is marked corrupt (iotest 060)', async () => {
    await both(s, 'qemu-img', 'create', '-q', '-f', 'qcow2', 't.qcow2', '64M');
    // The first refcount table entry (the table is the second cluster) cleared: every cluster reads as free.
    await poke(s, 't.qcow2', (buf) => (buf.fill(0, 65536, 65536 + 8), buf));
    const r = await expectSameIn('io', ['-c', 'write 0 512', 't.qcow2'], s);
    expect(r.stderr).toContain('Preventing invalid write on metadata (overlaps with refcount table)');
    expect(await incompatible(join(s.b, 't.qcow2'))).toBe(await incompatible(join(s.q, 't.qcow2')));
    expect(Buffer.compare(await readFile(join(s.b, 't.qcow2')), await readFile(join(s.q, 't.qcow2')))).toBe(0);
    await expectSameIn('img', ['check', 't.qcow2'], s);
  });


  it.each([
    ['L2 table', [], 'write 64k 64k'],
    ['compressed cluster', ['write -q 0 64k'], 'write -c 64k 64k'],
  ])('the header cluster counted free: a new %s would go to offset 0, which QEMU refuses by that name (iotest 137)', async (what, before, cmd) => {
    await both(s, 'qemu-img', 'create', '-q', '-f', 'qcow2', 't.qcow2', '64M');
    if (before.length > 0) await both(s, 'qemu-io', ...before.flatMap((c) => ['-c', c]), 't.qcow2');
    // The first refcount block's first entries (the block is the third cluster) cleared: the header reads as free.
    await poke(s, 't.qcow2', (buf) => (buf.fill(0, 0x20000, 0x20000 + 8), buf));
    const r = await expectSameIn('io', ['-c', cmd, '-c', 'read -q 0 512', 't.qcow2'], s);
    expect(r.stderr).toContain(`Marking image as corrupt: Preventing invalid allocation of ${what} at offset 0`);
    expect(await incompatible(join(s.b, 't.qcow2'))).toBe(await incompatible(join(s.q, 't.qcow2')));
    await expectSameIn('img', ['check', 't.qcow2'], s);
  });
  it('an unaligned L2 table offset read through a read-only image is reported, not marked (iotest 060)', async () => {
    await both(s, 'qemu-img', 'create', '-q', '-f', 'qcow2', 't.qcow2', '64M');
    // The L1 table's first entry: 0x2a2a2a2a (unaligned, with bits the offset mask leaves out).
    await poke(s, 't.qcow2', (buf) => (buf.writeUInt32BE(0x2a2a2a2a, Number(buf.readBigUInt64BE(40)) + 4), buf));
    await expectSameIn('io', ['-r', '-c', 'read 0 512', 't.qcow2'], s);
    await expectSameIn('img', ['info', 't.qcow2'], s);
  });
});

/**
 * Opening qcow2 images with odd headers, `blockemu img` against qemu-img
 * 7.2: the refusals QEMU's qcow2_do_open makes, in its order and words
 * (unknown incompatible features named from the image's own feature table,
 * "Image is too big", backing-file offsets and extension lengths past the
 * end of cluster 0), and the unknown autoclear bits a read-write check
 * clears (iotests 036, 054, 080).
 */
import { copyFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemu } from '../helpers/qemu.js';
import { expectSame, must, scratch } from './img-oracle.js';

async function poke(path: string, offset: number, bytes: Uint8Array): Promise<void> {
  const f = await open(path, 'r+');
  try {
    await f.write(bytes, 0, bytes.length, offset);
  } finally {
    await f.close();
  }
}

const be64 = (v: bigint) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v);
  return b;
};

/** A feature table entry: type, bit, name padded to 46 bytes. */
function feature(type: number, bit: number, name: string): Uint8Array {
  const e = new Uint8Array(48);
  e[0] = type;
  e[1] = bit;
  e.set(new TextEncoder().encode(name), 2);
  return e;
}

describe.skipIf(!qemu.available)('blockemu img: opening qcow2 headers qemu-img refuses (vs qemu-img 7.2)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  const img = (name: string) => must('qemu-img', ['create', '-q', '-f', 'qcow2', name, '64M'], s.dir);
  beforeAll(async () => {
    s = await scratch();
  });
  afterAll(() => s.done());

  it('names unknown incompatible features from the feature table, the rest as a mask', async () => {
    await img('feat.qcow2');
    const f = join(s.dir, 'feat.qcow2');
    await poke(f, 72, be64(0xe000000000000000n));
    // QEMU writes its feature table as the first extension (at 112, data at 120): replace its entries.
    await poke(f, 120, new Uint8Array([...feature(0, 62, 'test2'), ...feature(1, 61, 'compat one'), ...feature(0, 60, 'test4'), ...new Uint8Array(48)]));
    await expectSame(['info', 'feat.qcow2'], s.dir);
    await poke(f, 120 + 48, feature(0, 63, 'test3'));
    await expectSame(['info', 'feat.qcow2'], s.dir);
  });

  it('refuses a virtual size whose L1 table would pass INT_MAX entries: "Image is too big"', async () => {
    await img('big.qcow2');
    await poke(join(s.dir, 'big.qcow2'), 24, be64(1n << 60n));
    await expectSame(['info', 'big.qcow2'], s.dir);
    await expectSame(['check', 'big.qcow2'], s.dir);
  });

  it('checks the backing file offset and extension lengths against cluster 0', async () => {
    await img('ext.qcow2');
    const f = join(s.dir, 'ext.qcow2');
    await poke(f, 8, be64(0xffffffffffffffffn));
    await expectSame(['info', 'ext.qcow2'], s.dir);
    await poke(f, 112, new Uint8Array([0x12, 0x34, 0x56, 0x78, 0x7f, 0xff, 0xff, 0xff]));
    await poke(f, 8, be64(116n));
    await expectSame(['info', 'ext.qcow2'], s.dir);
    await poke(f, 8, be64(0n));
    await expectSame(['info', 'ext.qcow2'], s.dir);
  });

  it('refuses table sizes and offsets with QEMU\'s qcow2_validate_table words', async () => {
    const cases: Array<[number, Uint8Array]> = [
      [56, new Uint8Array([0xff, 0xff, 0xff, 0xff])],
      [48, be64(0x1234567890abcdefn)],
      [60, new Uint8Array([0x7f, 0xff, 0xff, 0xff])],
      [64, be64(0x1234567890abcdefn)],
      [36, new Uint8Array([0x7f, 0xff, 0xff, 0xff])],
      [40, be64(0x1234567890abcdefn)],
    ];
    for (const [i, [off, bytes]] of cases.entries()) {
      const name = `table${i}.qcow2`;
      await img(name);
      await poke(join(s.dir, name), off, bytes);
      await expectSame(['info', name], s.dir);
    }
  });

  it('opens an image whose snapshot table lies past the end of the file, as QEMU does (it reads zeroes there; iotest 080)', async () => {
    await img('past.qcow2');
    const f = join(s.dir, 'past.qcow2');
    await poke(f, 64, be64(0x100000000n));
    await poke(f, 60, new Uint8Array([0, 0, 0, 100]));
    expect((await expectSame(['info', 'past.qcow2'], s.dir)).b.code).toBe(0);
    await expectSame(['snapshot', '-l', 'past.qcow2'], s.dir);
  });

  it('check -r all clears autoclear bits of unknown features, as qemu-img does', async () => {
    await img('auto.qcow2');
    await poke(join(s.dir, 'auto.qcow2'), 88, be64(1n << 63n));
    await copyFile(join(s.dir, 'auto.qcow2'), join(s.b, 'auto.qcow2'));
    await copyFile(join(s.dir, 'auto.qcow2'), join(s.q, 'auto.qcow2'));
    await expectSame(['check', '-r', 'all', 'auto.qcow2'], s);
    const b = await must('qemu-img', ['info', '--output=json', 'auto.qcow2'], s.b);
    const q = await must('qemu-img', ['info', '--output=json', 'auto.qcow2'], s.q);
    expect(b).toEqual(q);
    const head = async (dir: string) => {
      const f = await open(join(dir, 'auto.qcow2'), 'r');
      const buf = new Uint8Array(8);
      await f.read(buf, 0, 8, 88);
      await f.close();
      return buf;
    };
    expect(await head(s.b)).toEqual(await head(s.q));
    expect(await head(s.b)).toEqual(new Uint8Array(8));
  });
});

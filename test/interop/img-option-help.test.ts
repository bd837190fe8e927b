/**
 * `-o help` (and `-o ?`) of img create, convert and amend against qemu-img
 * 7.2: the option lists of each format, with and without a target file name
 * (the protocol's options merged in), the amend lists, and the refusals.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { qemu } from '../helpers/qemu.js';
import { expectSameIn, must, scratch } from './img-oracle.js';

describe.skipIf(!qemu.available)('img -o help (vs qemu-img)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeAll(async () => {
    s = await scratch();
    for (const dir of [s.b, s.q]) {
      await must('qemu-img', ['create', '-q', '-f', 'qcow2', 'a.qcow2', '1M'], dir);
      await writeFile(join(dir, 'src.raw'), Buffer.alloc(65536));
    }
  });
  afterAll(() => s.done());

  const cases = [
    'create -f qcow2 -o help',
    'create -f qcow2 -o help x.img',
    'create -f raw -o ? x.img',
    'create -o help',
    'create -f luks -o help',
    'create -f luks -o help x.img',
    'create -f qcow2 -o help nbd:localhost:10809',
    'create -f qcow2 -o help foo:bar',
    'create -f bogus -o help',
    'create -f qcow2 -o cluster_size=4k -o help x.img',
    'create -f qcow2 -o help,,x x.img',
    'create -f qcow2 -o backing_file=a,,help x.img 1M',
    'create -f qcow2 -o help=on x.img 1M',
    'create -f qcow2 -o ,help x.img',
    'convert -O qcow2 -o help a.qcow2',
    'convert -O luks -o help a.qcow2 b.img',
    'convert -o help a.qcow2 b.raw',
    'convert -n -O qcow2 -o help a.qcow2 b.qcow2',
    'amend -f qcow2 -o help',
    'amend -f luks -o help',
    'amend -f raw -o help',
    'amend -f bogus -o help',
    'amend -o help a.qcow2',
    'amend -o help src.raw',
  ];
  it.each(cases)('%s', async (line) => {
    await expectSameIn('img', line.split(' '), s);
  });
});

/**
 * qcow2 images with an external data file, against qemu-img and qemu-io
 * 7.2 (iotests 061, 243, 244, 270, 289): create with data_file and
 * data_file_raw, guest data at its guest offsets in the data file and the
 * map that shows it, zero clusters written through to a raw data file,
 * check, the open refusals, amend, resize and preallocation, and the
 * features an external data file excludes. Each scenario runs step by step
 * in a directory of its own for each tool, every step's output compared;
 * then each tool checks and compares the other's images.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { qemu, run } from '../helpers/qemu.js';
import { expectSameIn, must, scratch } from './img-oracle.js';

const same = expectSameIn;

/** The 244 layout: 1-2 MiB data, 2-3 MiB discarded, 3-4 MiB zeroed after the discard, 4-5 MiB zeroed over data, 5-6 MiB zeroed over nothing. */
const LAYOUT = ['-c', 'write -q -P 0x11 1M 4M', '-c', 'discard -q 2M 2M', '-c', 'write -q -z 3M 3M'];

describe.skipIf(!qemu.available)('qcow2 with an external data file (vs qemu-img and qemu-io)', () => {
  let s: Awaited<ReturnType<typeof scratch>>;
  beforeEach(async () => {
    s = await scratch();
  });
  afterEach(() => s.done());

  /** Each tool checks the other's image, and the two images (with their data files) read the same. */
  async function crossCheck(name: string): Promise<void> {
    expect((await run('qemu-img', ['check', name], { cwd: s.b })).code).toBe(0);
    await must('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', join(s.b, name), join(s.q, name)], s.q);
    expect((await stat(join(s.b, name))).size).toBe((await stat(join(s.q, name))).size);
  }

  it('guest data lives at its guest offsets in the data file; map, reads and check agree (iotest 244)', async () => {
    await same('img', ['create', '-f', 'qcow2', '-o', 'data_file=t.data', 't.qcow2', '64M'], s);
    await same('img', ['info', 't.qcow2'], s);
    await same('img', ['info', '--output=json', 't.qcow2'], s);
    await same('io', [...LAYOUT, 't.qcow2'], s);
    await same('img', ['map', '--output=json', 't.qcow2'], s);
    await same('img', ['map', 't.qcow2'], s);
    await same('io', ['-c', 'read -q -P 0 0 1M', '-c', 'read -q -P 0x11 1M 1M', '-c', 'read -q -P 0 2M 4M', 't.qcow2'], s);
    // Zero clusters are only marked in the tables: the data file keeps what was written under them.
    await same('io', ['-f', 'raw', '-c', 'read -q -P 0x11 1M 1M', '-c', 'read -q -P 0x11 4M 1M', '-c', 'read -q -P 0 5M 1M', 't.data'], s);
    await same('img', ['check', 't.qcow2'], s);
    // A write at guest offset 0 sits at offset 0 of the data file, told from "unallocated" by the copied flag.
    await same('io', ['-f', 'qcow2', '-c', 'write -q -P 0x22 0 64k', 't.qcow2'], s);
    await same('img', ['map', '--output=json', 't.qcow2'], s);
    await crossCheck('t.qcow2');
    expect(Buffer.compare(await readFile(join(s.b, 't.data')), await readFile(join(s.q, 't.data')))).toBe(0);
  });

  it('data_file_raw: metadata preallocated, zeroes written through, the data file a raw image of the guest (iotest 244)', async () => {
    await same('img', ['create', '-f', 'qcow2', '-o', 'data_file=t.data,data_file_raw=on', 't.qcow2', '64M'], s);
    await same('img', ['map', '--output=json', 't.qcow2'], s);
    await same('io', [...LAYOUT, 't.qcow2'], s);
    await same('img', ['map', '--output=json', 't.qcow2'], s);
    await same('io', ['-f', 'raw', '-c', 'read -q -P 0x11 1M 1M', '-c', 'read -q -P 0 3M 3M', 't.data'], s);
    await same('img', ['compare', '-f', 'raw', '-F', 'qcow2', 't.data', 't.qcow2'], s);
    await same('img', ['info', '--output=json', 't.qcow2'], s);
    // Growing keeps the mapping whole: the new area is preallocated into the data file.
    await same('img', ['resize', 't.qcow2', '80M'], s);
    await same('img', ['map', '--output=json', 't.qcow2'], s);
    await same('img', ['compare', '-f', 'raw', '-F', 'qcow2', 't.data', 't.qcow2'], s);
    await same('img', ['amend', '-o', 'data_file_raw=off', 't.qcow2'], s);
    await same('img', ['amend', '-o', 'data_file_raw=on', 't.qcow2'], s);
    await same('img', ['info', 't.qcow2'], s);
    await crossCheck('t.qcow2');
  });

  it("finds its data file as the header or the options say, with QEMU's refusals (iotests 061, 244)", async () => {
    await same('img', ['create', '-f', 'qcow2', '-o', 'data_file=t.data', 't.qcow2', '64M'], s);
    await same('io', ['-c', 'open -o data-file.filename=t.data t.qcow2', '-c', 'read -q -P 0 0 64k'], s);
    await same('io', ['-c', 'open -o data-file.filename=inexistent t.qcow2', '-c', 'read -q -P 0 0 64k'], s);
    await same('img', ['amend', '-o', 'data_file=', 't.qcow2'], s);
    await same('img', ['info', 't.qcow2'], s);
    await same('io', ['-c', 'open t.qcow2', '-c', 'read -q -P 0 0 64k'], s);
    await same('io', ['-c', 'open -o data-file.filename=t.data t.qcow2', '-c', 'read -q -P 0 0 64k'], s);
    await same('img', ['amend', '-o', 'data_file=foo', 't.qcow2'], s);
    await same('io', ['-c', 'open t.qcow2', '-c', 'read -q 0 64k'], s);
    await same('img', ['create', '-f', 'qcow2', 'plain.qcow2', '64M'], s);
    await same('io', ['-c', 'open -o data-file.filename=t.data plain.qcow2', '-c', 'read -q 0 64k'], s);
    await same('img', ['amend', '-o', 'data_file=t.data', 'plain.qcow2'], s);
  });

  it('what an external data file excludes: compression, internal snapshots, data_file_raw set later, downgrades (iotests 061, 244)', async () => {
    await same('img', ['create', '-q', '-f', 'qcow2', 'src.qcow2', '64M'], s);
    await same('io', ['-c', 'write -q -P 0x11 0 1M', 'src.qcow2'], s);
    await same('img', ['convert', '-f', 'qcow2', '-O', 'qcow2', '-c', '-o', 'data_file=t.data', 'src.qcow2', 't.qcow2'], s);
    await same('img', ['convert', '-f', 'qcow2', '-O', 'qcow2', '-o', 'data_file=t.data', 'src.qcow2', 't.qcow2'], s);
    await same('img', ['compare', 'src.qcow2', 't.qcow2'], s);
    await same('io', ['-c', 'write -c -P 0x22 0 1M', 't.qcow2'], s);
    await same('img', ['snapshot', '-c', 'test', 't.qcow2'], s);
    await same('img', ['snapshot', '-l', 't.qcow2'], s);
    await same('img', ['amend', '-o', 'data_file_raw=on', 't.qcow2'], s);
    await same('img', ['amend', '-o', 'compat=0.10', 't.qcow2'], s);
    await same('img', ['create', '-f', 'qcow2', '-o', 'compat=0.10,data_file=x.data', 'x.qcow2', '1M'], s);
    await same('img', ['create', '-f', 'qcow2', '-o', 'data_file_raw=on', 'y.qcow2', '1M'], s);
    await same('img', ['check', 't.qcow2'], s);
    await crossCheck('t.qcow2');
  });

  it('preallocation goes to the data file, resizes follow the image, convert -C copies (iotests 243, 244)', async () => {
    for (const mode of ['off', 'metadata', 'falloc', 'full']) {
      await same('img', ['create', '-f', 'qcow2', '-o', `data_file=${mode}.data,preallocation=${mode},extent_size_hint=0`, `${mode}.qcow2`, '8M'], s);
      await same('img', ['map', '--output=json', `${mode}.qcow2`], s);
      for (const f of [`${mode}.qcow2`, `${mode}.data`]) expect((await stat(join(s.b, f))).size).toBe((await stat(join(s.q, f))).size);
      // falloc and full allocate the data file on disk; off and metadata leave it sparse.
      const blocks = (await stat(join(s.b, `${mode}.data`))).blocks * 512;
      expect(blocks >= 8 << 20).toBe(mode === 'falloc' || mode === 'full');
    }
    await same('img', ['resize', 'off.qcow2', '12M'], s);
    await same('img', ['resize', '--shrink', 'metadata.qcow2', '4M'], s);
    for (const f of ['off.data', 'metadata.data']) expect((await stat(join(s.b, f))).size).toBe((await stat(join(s.q, f))).size);
    await same('img', ['create', '-q', '-f', 'qcow2', 'src.qcow2', '12M'], s);
    await same('io', ['-c', 'write -q -P 7 1M 3M', 'src.qcow2'], s);
    await same('img', ['convert', '-f', 'qcow2', '-O', 'qcow2', '-n', '-C', 'src.qcow2', 'off.qcow2'], s);
    await same('img', ['compare', '-f', 'qcow2', '-F', 'qcow2', 'src.qcow2', 'off.qcow2'], s);
    await same('img', ['convert', '-C', '-c', '-O', 'qcow2', 'src.qcow2', 'c.qcow2'], s);
    await crossCheck('off.qcow2');
  });

  it('a data file under blkdebug: a failed write frees nothing, a failed flush reaches the tool (iotests 244, 289)', async () => {
    await same('img', ['create', '-q', '-f', 'qcow2', '-o', 'data_file=t.data', 't.qcow2', '64k'], s);
    const json = (inject: string) =>
      `json:{'driver': 'qcow2', 'file': {'driver': 'file', 'filename': 't.qcow2'}, 'data-file': {'driver': 'raw', 'file': {'driver': 'blkdebug', 'inject-error': [${inject}], 'image': {'driver': 'file', 'filename': 't.data'}}}}`;
    await same('io', ['-c', 'write 0 64k', json("{'event': 'write_aio', 'errno': 5, 'once': true}")], s);
    await same('img', ['check', 't.qcow2'], s);
    await same('io', ['-t', 'writeback', '-c', 'write -q 0 512', '-c', 'flush', json("{'event': 'none', 'iotype': 'flush'}")], s);
  });
});

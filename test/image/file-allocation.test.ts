/**
 * HostFile.allocation: the host's holes and data as lseek's SEEK_DATA and
 * SEEK_HOLE give them (asked of the lock helper), the way file-posix's
 * find_allocation and raw_co_block_status use them: a run from the
 * offset, cut at the requested length; written zeroes are data; a hole up
 * to the end of the file (ENXIO) is a hole to the length asked.
 */
import { open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostFile } from '../../src/image/file.js';

const KiB = 1024;
const MiB = 1024 * KiB;

describe('HostFile.allocation (SEEK_DATA / SEEK_HOLE)', () => {
  const path = join(tmpdir(), `blockemu-allocation-${process.pid}.img`);
  let f: HostFile;

  beforeAll(async () => {
    // 0–1 MiB hole, 1–2 MiB data, 2–3 MiB hole, 3–4 MiB written zeroes, then a hole up to 8 MiB.
    const fh = await open(path, 'w');
    await fh.write(new Uint8Array(MiB).fill(1), 0, MiB, MiB);
    await fh.write(new Uint8Array(MiB), 0, MiB, 3 * MiB);
    await fh.truncate(8 * MiB);
    await fh.close();
    f = await HostFile.open(path, { readOnly: true });
  });
  afterAll(async () => {
    await f.close();
    await rm(path, { force: true });
  });

  it.each([
    [0, 8 * MiB, { length: MiB, zero: true }],
    [512 * KiB, 8 * MiB, { length: 512 * KiB, zero: true }],
    [MiB, 8 * MiB, { length: MiB, zero: false }],
    [MiB, 4 * KiB, { length: 4 * KiB, zero: false }],
    [2 * MiB, 8 * MiB, { length: MiB, zero: true }],
    // Written zeroes are data to the host, as QEMU reports them.
    [3 * MiB, 8 * MiB, { length: MiB, zero: false }],
    // The trailing hole: ENXIO, a hole for all that was asked.
    [5 * MiB, 3 * MiB, { length: 3 * MiB, zero: true }],
    [9 * MiB, MiB, { length: MiB, zero: true }],
  ])('from %i, at most %i bytes: %o', async (offset, length, run) => {
    expect(await f.allocation(offset, length)).toEqual(run);
  });
});

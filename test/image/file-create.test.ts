/**
 * New files as file-posix's raw_co_create makes them: the lock bytes for
 * write and resize are taken, and checked against every other user, before
 * an existing file is emptied.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CREATE_PERMS, createHostFile } from '../../src/image/file-create.js';
import { ofdLocksAvailable } from '../../src/image/file-lock.js';
import { HostFile } from '../../src/image/file.js';
import { createImage } from '../../src/image/open.js';
import { lockedBytes, refusal } from '../helpers/locks.js';

const ofd = await ofdLocksAvailable();
if (!ofd) console.warn('SKIP: this machine cannot take OFD locks through perl (see resolveLocking)');

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'blockemu-file-create-'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.skipIf(!ofd)('image locks of a new file (raw_co_create)', () => {
  it('creating over an image in use is refused before anything is emptied', async () => {
    const raw = join(dir, 'in-use.raw');
    await writeFile(raw, Buffer.alloc(4096, 0x5a));
    const holder = await HostFile.open(raw, { locking: 'auto' });
    // A writer that lets others only read
    await holder.lockPerms(1 | 2, 1);
    try {
      expect(await refusal(createHostFile(raw, 512))).toEqual({ message: 'Failed to get "write" lock', hint: `Is another process using the image [${raw}]?` });
      expect(await refusal(createImage(raw, { format: 'qcow2', size: 1 << 20 }))).toEqual({ message: 'Failed to get "write" lock', hint: `Is another process using the image [${raw}]?` });
      expect((await stat(raw)).size).toBe(4096);
      expect((await readFile(raw))[0]).toBe(0x5a);
    } finally {
      await holder.close();
    }
    // Once it is let go, the file is created anew; its create locks go with the descriptor.
    await createHostFile(raw, 512);
    expect((await stat(raw)).size).toBe(512);
    expect(await lockedBytes(raw)).toEqual([]);
    expect(CREATE_PERMS).toEqual({ perm: 2 | 8, shared: 1 | 2 | 4 });
  });
});

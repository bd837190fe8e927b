/**
 * openImage and checkImage with `locks`: each file of the chain gets the
 * lock bytes tool-perms.ts works out, taken before the file is read, and a
 * conflicting holder refuses the open in QEMU's words. No QEMU needed: the
 * holders here are blockemu's own descriptors (test/interop/cli-locks.test.ts
 * does the same against QEMU's tools).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ofdLocksAvailable } from '../../src/image/file-lock.js';
import { HostFile } from '../../src/image/file.js';
import { checkImage, createImage, openImage, type OpenLocks } from '../../src/image/open.js';
import { topLockSpec, type ToolOpenFlags } from '../../src/image/tool-perms.js';
import { lockedBytes, refusal } from '../helpers/locks.js';

const ofd = await ofdLocksAvailable();
if (!ofd) console.warn('SKIP: this machine cannot take OFD locks through perl (see resolveLocking)');

const locks = (flags: ToolOpenFlags): OpenLocks => {
  const s = topLockSpec(flags);
  return { node: s.node, noIo: s.noIo, forceShare: s.forceShare };
};
const RW = locks({ readOnly: false });
const RO = locks({ readOnly: true });

let dir: string;
let top: string;
let base: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'blockemu-open-locks-'));
  base = join(dir, 'base.qcow2');
  top = join(dir, 'top.qcow2');
  await createImage(base, { format: 'qcow2', size: 1 << 20 });
  await createImage(top, { format: 'qcow2', size: 1 << 20, backingFile: base, backingFormat: 'qcow2' });
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.skipIf(!ofd)('image locks of openImage', () => {
  it('a read-write chain: the overlay locks write and resize and unshares them, its backing file is read consistently', async () => {
    const img = await openImage(top, { readOnly: false, locks: RW });
    try {
      // 100 + i per perm bit, 200 + i per unshared bit (file-posix's lock bytes)
      expect(await lockedBytes(top)).toEqual([100, 101, 103, 201, 203]);
      expect(await lockedBytes(base)).toEqual([100, 201, 203]);
    } finally {
      await img.close();
    }
    expect(await lockedBytes(top)).toEqual([]);
    expect(await lockedBytes(base)).toEqual([]);
  });

  it('without `locks` nothing is locked or checked', async () => {
    const writer = await openImage(top, { readOnly: false, locks: RW });
    try {
      const img = await openImage(top, { readOnly: true });
      expect(await lockedBytes(top)).toEqual([100, 101, 103, 201, 203]);
      await img.close();
    } finally {
      await writer.close();
    }
  });

  it('a reader is refused by a writer, in QEMU words, and leaves no byte behind; -U lets it read', async () => {
    const writer = await openImage(top, { readOnly: false, locks: RW });
    try {
      expect(await refusal(openImage(top, { readOnly: true, locks: RO }))).toEqual({
        message: 'Failed to get shared "write" lock',
        hint: `Is another process using the image [${top}]?`,
      });
      expect(await lockedBytes(top)).toEqual([100, 101, 103, 201, 203]);
      const shared = await openImage(top, { readOnly: true, locks: locks({ readOnly: true, forceShare: true }) });
      expect(await lockedBytes(top)).toEqual([100, 100, 101, 103, 201, 203]);
      await shared.close();
      // check opens the chain too: its own file is refused first
      expect((await refusal(checkImage(top, { locks: RO }))).message).toBe('Failed to get shared "write" lock');
    } finally {
      await writer.close();
    }
  });

  it('force-share is for readers only', async () => {
    expect((await refusal(openImage(top, { readOnly: false, locks: locks({ readOnly: false, forceShare: true }) }))).message).toBe(
      'force-share=on can only be used with read-only images',
    );
  });

  it('a writer of the backing file refuses every reader of the chain, named through the overlay', async () => {
    const writer = await openImage(base, { readOnly: false, locks: RW });
    try {
      const r = await refusal(openImage(top, { readOnly: true, locks: RO }));
      expect(r).toEqual({ message: 'Could not open backing file: Failed to get shared "write" lock', hint: `Is another process using the image [${base}]?` });
      expect((await refusal(checkImage(top, { locks: RO }))).message).toBe('Could not open backing file: Failed to get shared "write" lock');
      expect(await lockedBytes(top)).toEqual([]);
      // Without the backing chain (qemu-img info), the overlay alone opens.
      await (await openImage(top, { readOnly: true, openBacking: false, locks: locks({ readOnly: true, noIo: true }) })).close();
    } finally {
      await writer.close();
    }
  });

  it('the lock is checked before the file is read: a locked file with a bad header is refused for the lock', async () => {
    const bad = join(dir, 'bad.qcow2');
    await writeFile(bad, Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), Buffer.alloc(508, 0xff)]));
    const holder = await HostFile.open(bad, { locking: 'auto' });
    await holder.lockPerms(1 | 2, 1);
    try {
      expect((await refusal(openImage(bad, { format: 'qcow2', readOnly: true, locks: RO }))).message).toBe('Failed to get shared "write" lock');
    } finally {
      await holder.close();
    }
    expect((await refusal(openImage(bad, { format: 'qcow2', readOnly: true, locks: RO }))).message).not.toMatch(/Failed to get/);
  });
});

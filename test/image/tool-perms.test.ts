/**
 * The permissions QEMU 7.2's tools hold on each file of a chain, worked out
 * by hand from block.c, block-backend.c and raw-format.c (the comments say
 * which rule gives each bit). test/interop/cli-locks.test.ts reads the same
 * answers back from QEMU's own tools, byte by byte.
 */
import { describe, expect, it } from 'vitest';
import { CREATE_PERMS } from '../../src/image/file-create.js';
import { backendPerms, chainFilePerms, checkForceShare } from '../../src/image/tool-perms.js';

const R = 1, W = 2, WU = 4, RS = 8, ALL = 15;

describe('tool permissions', () => {
  it("blk_new_open: read unless no-io, write with read-write, resize with BDRV_O_RESIZE; shares all, or only reads with no-share", () => {
    expect(backendPerms({ readOnly: true })).toEqual({ perm: R, shared: ALL });
    expect(backendPerms({ readOnly: false })).toEqual({ perm: R | W, shared: ALL });
    expect(backendPerms({ readOnly: true, noIo: true })).toEqual({ perm: 0, shared: ALL });
    expect(backendPerms({ readOnly: false, resize: true })).toEqual({ perm: R | W | RS, shared: ALL });
    expect(backendPerms({ readOnly: true, noShare: true })).toEqual({ perm: R, shared: R | WU });
    expect(backendPerms({ readOnly: true, bare: true, noShare: true })).toEqual({ perm: 0, shared: ALL });
  });

  it('a qcow2 file: metadata is read consistently and nobody else may write or resize it; a writer also resizes', () => {
    expect(chainFilePerms(['qcow2'], { readOnly: false })).toEqual([{ perm: R | W | RS, shared: R | WU }]);
    expect(chainFilePerms(['qcow2'], { readOnly: true })).toEqual([{ perm: R, shared: R | WU }]);
    // qemu-img info (BDRV_O_NO_IO): still unshares write and resize, but takes nothing.
    expect(chainFilePerms(['qcow2'], { readOnly: true, noIo: true })).toEqual([{ perm: 0, shared: R | WU }]);
  });

  it('a raw file is filtered through: what the BlockBackend takes and shares, nothing more', () => {
    expect(chainFilePerms(['raw'], { readOnly: false })).toEqual([{ perm: R | W, shared: ALL }]);
    expect(chainFilePerms(['raw'], { readOnly: true })).toEqual([{ perm: R, shared: ALL }]);
    expect(chainFilePerms(['raw'], { readOnly: true, noIo: true })).toEqual([{ perm: 0, shared: ALL }]);
    // qemu-img convert's source (BDRV_O_NO_SHARE): a raw source cannot be written by others while it is copied.
    expect(chainFilePerms(['raw'], { readOnly: true, noShare: true })).toEqual([{ perm: R, shared: R | WU }]);
  });

  it('backing files are read consistently and locked against writers, whatever the overlay does', () => {
    const base = { perm: R, shared: R | WU };
    expect(chainFilePerms(['qcow2', 'qcow2', 'raw'], { readOnly: false })).toEqual([{ perm: R | W | RS, shared: R | WU }, base, { perm: R, shared: ALL }]);
    expect(chainFilePerms(['qcow2', 'qcow2'], { readOnly: true, noShare: true })).toEqual([{ perm: R, shared: R | WU }, base]);
    // A raw backing file has no metadata to protect: it shares what the COW link shares (all, while the overlay's users let others write).
    expect(chainFilePerms(['qcow2', 'raw'], { readOnly: true })).toEqual([{ perm: R, shared: R | WU }, { perm: R, shared: ALL }]);
  });

  it('no-io and force-share reach the backing files too (bdrv_inherited_options)', () => {
    expect(chainFilePerms(['qcow2', 'qcow2'], { readOnly: true, noIo: true })).toEqual([
      { perm: 0, shared: R | WU },
      { perm: 0, shared: R | WU },
    ]);
    expect(chainFilePerms(['qcow2', 'raw'], { readOnly: true, forceShare: true })).toEqual([
      { perm: R, shared: ALL },
      { perm: R, shared: ALL },
    ]);
    // qemu-img create's look at the backing file: bare, no-io, force-shared: nothing locked anywhere.
    expect(chainFilePerms(['qcow2', 'qcow2'], { readOnly: true, bare: true, noIo: true, forceShare: true })).toEqual([
      { perm: 0, shared: ALL },
      { perm: 0, shared: ALL },
    ]);
  });

  it('force-share is for readers only, in bdrv_open_common\'s words', () => {
    expect(() => checkForceShare(false, true)).toThrow('force-share=on can only be used with read-only images');
    expect(() => checkForceShare(true, true)).not.toThrow();
    expect(() => checkForceShare(false, false)).not.toThrow();
  });

  it("raw_co_create: write and resize, sharing all but resize", () => {
    expect(CREATE_PERMS).toEqual({ perm: W | RS, shared: R | W | WU });
  });
});

import { BlockError } from '../errors.js';
import type { Qcow2Image } from './image.js';
import type { Qcow2Writer } from './writer.js';
import { growL1 } from './resize.js';

/**
 * qcow2's VM state area (qcow2_save_vmstate, qcow2_load_vmstate): saved VM
 * state lives in the image's own address space, from the first L1 entry
 * past the virtual disk on (qcow2_vm_state_offset), mapped by the active
 * L1 table like guest data and carried along by internal snapshots. qemu-io
 * reaches it with `write -b` and `read -b`.
 */

/** Where the area starts: the first offset an L1 entry past the disk maps. */
export function vmStateOffset(img: Qcow2Image): number {
  return img.layout.l1SizeFor(img.size()) * img.layout.l2Coverage;
}

/**
 * Writes `data` at `pos` in the area. The L1 table grows to cover it first,
 * as qcow2_grow_l1_table does when not asked for an exact size (by half
 * again until it is large enough), so the file's layout is QEMU's.
 */
export async function saveVmState(img: Qcow2Image, writer: Qcow2Writer, pos: number, data: Uint8Array): Promise<void> {
  if (data.length === 0) return;
  const at = vmStateOffset(img) + pos;
  const need = img.layout.l1Index(at + data.length - 1) + 1;
  if (need > img.header.l1Size) {
    let size = Math.max(img.header.l1Size, 1);
    while (size < need) size = Math.ceil((size * 3) / 2);
    const rc = img.refcounts;
    if (!rc) throw new BlockError('READ_ONLY', `Image '${img.filename}' is read-only`, { errno: 'EPERM' });
    await img.meta.run(() => growL1(img, rc, size));
  }
  await writer.write(at, data, Number.MAX_SAFE_INTEGER);
}
// Reading it back (Qcow2Image.loadVmState) maps it as guest data: what was never written reads as zeroes.


import { realpath } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Qcow2Image } from '../../image/qcow2/image.js';
import type { BlockImage } from '../../image/types.js';

/**
 * Whether `img` itself allocates the bytes from `offset` (rather than
 * falling through to its backing file), and for how many bytes that holds:
 * bdrv_is_allocated, one run of clusters of one kind within an L2 table.
 * An unallocated cluster is unallocated with or without a backing file
 * (rebase onto a new backing file must see it: it reads zeroes now and
 * would read the new backing file's data after).
 */
export async function allocatedHere(img: BlockImage, offset: number, n: number): Promise<{ allocated: boolean; n: number }> {
  if (!(img instanceof Qcow2Image)) return { allocated: true, n };
  const m = await img.meta.run(() => img.map(offset, n));
  return { allocated: m.kind !== 'unallocated', n: m.length };
}

/**
 * bdrv_is_allocated_above(from, base) without base: allocated in some image
 * from `from` down to, not including, `base`; n 0 when `offset` lies past
 * the end of an image on the way.
 */
export async function allocatedAbove(from: BlockImage, base: BlockImage | undefined, offset: number, n: number): Promise<{ allocated: boolean; n: number }> {
  let len = n;
  for (let cur: BlockImage | undefined = from; cur && cur !== base; cur = cur.backing()) {
    if (offset >= cur.size()) return { allocated: false, n: 0 };
    const r = await allocatedHere(cur, offset, Math.min(len, cur.size() - offset));
    if (r.allocated) return r;
    len = Math.min(len, r.n);
  }
  return { allocated: false, n: len };
}

const real = (p: string) => realpath(p).catch(() => resolve(p));

/**
 * bdrv_find_backing_image: the image below `top` that `name` names, where
 * `name` is taken relative to the directory of each image in turn and
 * compared with that image's backing file, both canonicalised.
 */
export async function findBackingImage(top: BlockImage, name: string): Promise<BlockImage | undefined> {
  for (let cur: BlockImage | undefined = top; cur?.backing(); cur = cur.backing()) {
    const below = cur.backing()!;
    if ((await real(resolve(dirname(cur.filename), name))) === (await real(below.filename))) return below;
  }
  return undefined;
}

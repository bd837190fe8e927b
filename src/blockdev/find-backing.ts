import { realpath } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { backingChainNext, cowChild, skipFilters } from './chain.js';
import { backingOverridden, type NodeName } from './filename.js';
import type { BlockNode } from './node.js';

/** A name with a protocol prefix ("nbd:", "json:"): compared as it is, never as a path. */
const hasProtocol = (name: string) => /^[A-Za-z0-9.+_-]+:/.test(name.split('/')[0] ?? '');

const canonical = (path: string) => realpath(path).catch(() => undefined);

/**
 * bdrv_find_backing_image: the node of `bs`'s chain (filters skipped)
 * that a backing file name means — compared with the node's own name
 * where its overlay's backing was given otherwise than by its image,
 * with the image's backing file string (and its full path) for protocol
 * names, and else as canonical paths, a relative name taken relative to
 * the overlay's image. `names` are the chain's refreshed names.
 */
export async function findBackingImage(bs: BlockNode, name: string, names: ReadonlyMap<BlockNode, NodeName>): Promise<BlockNode | undefined> {
  const protocol = hasProtocol(name);
  for (let curr = skipFilters(bs); cowChild(curr); ) {
    const below = backingChainNext(curr)!;
    const own = names.get(curr)?.filename ?? '';
    if (backingOverridden(curr, names)) {
      if (name === names.get(below)?.filename) return below;
    } else {
      const info = await curr.imageInfo();
      const header = info.backingFilename ?? '';
      if (protocol || hasProtocol(header)) {
        if (name === header || name === info.fullBackingFilename) return below;
      } else if (isAbsolute(name) || !hasProtocol(own)) {
        // An absolute name needs nothing of the overlay's own (a blkdebug:: drive: iotest 040).
        const wanted = await canonical(isAbsolute(name) ? name : resolve(dirname(own), name));
        const full = info.fullBackingFilename && (await canonical(info.fullBackingFilename));
        if (wanted !== undefined && wanted === full) return below;
      }
    }
    curr = below;
  }
  return undefined;
}

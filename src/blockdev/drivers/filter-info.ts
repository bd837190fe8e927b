import type { BlockNode, NodeImageInfo } from '../node.js';

/**
 * What QEMU's queries say of a filter without image info of its own
 * (copy-before-write, copy-on-read, commit_top): its size, its filtered
 * node's file name, allocation and cluster size (bdrv_co_get_info passes
 * to the filtered child), and a clean dirty flag.
 */
export async function filterImageInfo(format: string, size: number, below: BlockNode): Promise<NodeImageInfo> {
  const s = await below.imageInfo();
  return {
    filename: s.filename,
    format,
    virtualSize: size,
    ...(s.actualSize !== undefined ? { actualSize: s.actualSize } : {}),
    ...(s.clusterSize !== undefined ? { clusterSize: s.clusterSize } : {}),
    dirtyFlag: false,
  };
}

import type { DirtyBitmap } from '../../blockdev/dirty-bitmap.js';
import type { BlockNode, NodeImageInfo } from '../../blockdev/node.js';

/**
 * The wire shapes of query-named-block-nodes (BlockDeviceInfo, ImageInfo).
 * Members are added in the schema's order, as QEMU's output visitor does:
 * with the QDict ordering of json-out.ts that makes the replies
 * byte-identical to QEMU's.
 */
function imageInfo(i: NodeImageInfo, withBacking: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = { filename: i.filename, format: i.format, 'dirty-flag': i.dirtyFlag ?? false };
  if (i.actualSize !== undefined) out['actual-size'] = i.actualSize;
  out['virtual-size'] = i.virtualSize;
  if (i.clusterSize !== undefined) out['cluster-size'] = i.clusterSize;
  if (i.backingFilename !== undefined) {
    out['backing-filename'] = i.backingFilename;
    if (i.fullBackingFilename !== undefined) out['full-backing-filename'] = i.fullBackingFilename;
    if (i.backingFormat !== undefined) out['backing-filename-format'] = i.backingFormat;
  }
  if (withBacking && i.backingImage) out['backing-image'] = imageInfo(i.backingImage, true);
  const fs = i.formatSpecific;
  if (fs?.type === 'qcow2') {
    out['format-specific'] = {
      type: 'qcow2',
      data: {
        compat: fs.compat,
        ...(fs.compat === '1.1' ? { 'extended-l2': fs.extendedL2, 'lazy-refcounts': fs.lazyRefcounts, corrupt: fs.corrupt } : {}),
        'refcount-bits': fs.refcountBits,
        ...(fs.bitmaps ? { bitmaps: fs.bitmaps } : {}),
        'compression-type': fs.compressionType,
      },
    };
  }
  return out;
}

/** How many backing images lie below a node (backing_file_depth). */
function backingDepth(i: NodeImageInfo): number {
  let n = 0;
  for (let b = i.backingImage; b; b = b.backingImage) n++;
  return n;
}

/** BlockDirtyInfo; anonymous bitmaps (a job's) are listed without a name. */
function dirtyInfo(b: DirtyBitmap): Record<string, unknown> {
  return {
    ...(b.name !== undefined ? { name: b.name } : {}),
    count: b.count,
    granularity: b.granularity,
    recording: b.recording,
    busy: b.busy,
    persistent: b.persistent,
    ...(b.inconsistent ? { inconsistent: true } : {}),
  };
}

export async function blockDeviceInfo(node: BlockNode, flat: boolean): Promise<Record<string, unknown>> {
  const info = await node.imageInfo();
  const s = node.settings;
  const out: Record<string, unknown> = { file: info.filename, 'node-name': node.nodeName, ro: node.readOnly, drv: node.driver };
  // QEMU shows the backing file as opened (the full name), and counts the chain only when not asked for a flat list.
  const backingFile = info.fullBackingFilename ?? info.backingFilename;
  if (backingFile !== undefined) out['backing_file'] = backingFile;
  Object.assign(out, {
    backing_file_depth: flat ? 0 : backingDepth(info),
    encrypted: false,
    detect_zeroes: s.detectZeroes,
    bps: 0,
    bps_rd: 0,
    bps_wr: 0,
    iops: 0,
    iops_rd: 0,
    iops_wr: 0,
    image: imageInfo(info, !flat),
    cache: { writeback: true, direct: s.cacheDirect, 'no-flush': s.cacheNoFlush },
    write_threshold: 0,
  });
  const bitmaps = node.dirtyBitmaps.all();
  if (bitmaps.length > 0) out['dirty-bitmaps'] = bitmaps.map(dirtyInfo);
  return out;
}

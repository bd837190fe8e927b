import type { DirtyBitmap } from '../../blockdev/dirty-bitmap.js';
import type { EncryptInfo } from '../../image/types.js';
import { cowChild, filteredChild, filterOrCowChild } from '../../blockdev/chain.js';
import { type NodeName, nodeNames } from '../../blockdev/filename.js';
import type { BlockNode, NodeImageInfo } from '../../blockdev/node.js';
import { LEGACY_LIMIT_NAMES, type ThrottleConfig } from '../../blockdev/throttle/config.js';
import { toQmpJson } from '../json-out.js';
import { asInt64 } from './block-stats.js';
import { QmpError } from '../error.js';

/**
 * The wire shapes of query-named-block-nodes (BlockDeviceInfo, ImageInfo).
 * Members are added in the schema's order, as QEMU's output visitor does:
 * with the QDict ordering of json-out.ts that makes the replies
 * byte-identical to QEMU's.
 */
function imageInfo(i: NodeImageInfo, withBacking: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = { filename: i.filename, format: i.format };
  if (i.dirtyFlag !== null) out['dirty-flag'] = i.dirtyFlag ?? false;
  if (i.actualSize !== undefined) out['actual-size'] = i.actualSize;
  out['virtual-size'] = i.virtualSize;
  if (i.clusterSize !== undefined) out['cluster-size'] = i.clusterSize;
  if (i.encrypted) out['encrypted'] = true;
  if (i.backingFilename !== undefined) {
    out['backing-filename'] = i.backingFilename;
    if (i.fullBackingFilename !== undefined) out['full-backing-filename'] = i.fullBackingFilename;
    if (i.backingFormat !== undefined) out['backing-filename-format'] = i.backingFormat;
  }
  if (i.snapshots) {
    out['snapshots'] = i.snapshots.map((sn) => ({
      id: sn.id,
      name: sn.name,
      'vm-state-size': sn.vmStateSize,
      'date-sec': sn.dateSec,
      'date-nsec': sn.dateNsec,
      'vm-clock-sec': Number(sn.vmClockNsec / 1_000_000_000n),
      'vm-clock-nsec': Number(sn.vmClockNsec % 1_000_000_000n),
      ...(sn.icount !== undefined ? { icount: Number(sn.icount) } : {}),
    }));
  }
  if (withBacking && i.backingImage) out['backing-image'] = imageInfo(i.backingImage, true);
  const fs = i.formatSpecific;
  if (fs?.type === 'luks') {
    // ImageInfoSpecificLUKSWrapper: QCryptoBlockInfoLUKS, the union's format left out.
    const { format: _format, ...data } = encryptInfo(fs.luks);
    out['format-specific'] = { type: 'luks', data };
  } else if (fs?.type === 'qcow2') {
    out['format-specific'] = {
      type: 'qcow2',
      data: {
        compat: fs.compat,
        ...(fs.dataFile !== undefined ? { 'data-file': fs.dataFile } : {}),
        ...(fs.dataFileRaw !== undefined ? { 'data-file-raw': fs.dataFileRaw } : {}),
        ...(fs.compat === '1.1' ? { 'extended-l2': fs.extendedL2, 'lazy-refcounts': fs.lazyRefcounts, corrupt: fs.corrupt } : {}),
        'refcount-bits': fs.refcountBits,
        ...(fs.encrypt ? { encrypt: encryptInfo(fs.encrypt) } : {}),
        ...(fs.bitmaps ? { bitmaps: fs.bitmaps } : {}),
        'compression-type': fs.compressionType,
      },
    };
  }
  return out;
}

/** QCryptoBlockInfo in its QAPI order (the union's format first). */
function encryptInfo(e: EncryptInfo): Record<string, unknown> {
  if (e.format === 'aes') return { format: 'qcow' };
  return {
    format: 'luks',
    'cipher-alg': e.cipherAlg,
    'cipher-mode': e.cipherMode,
    'ivgen-alg': e.ivgenAlg,
    'hash-alg': e.hashAlg,
    'payload-offset': e.payloadOffset,
    'master-key-iters': e.masterKeyIters,
    uuid: e.uuid,
    slots: e.slots.map((s) => (s.active ? { active: true, iters: s.iters, stripes: s.stripes, 'key-offset': s.keyOffset } : { active: false, 'key-offset': s.keyOffset })),
  };
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

/** Node names as QEMU makes them (bdrv_refresh_filename), json: ones written as QEMU's JSON writer writes them. */
export function namesOf(node: BlockNode): Map<BlockNode, NodeName> {
  return nodeNames(node, toQmpJson);
}

/** bdrv_skip_implicit_filters: below the filters a job inserted without a name of the user's. */
export function skipImplicitFilters(node: BlockNode): BlockNode {
  let n = node;
  for (let below = filteredChild(n); n.implicit && below; below = filteredChild(n)) n = below;
  return n;
}

/**
 * The node's image info and, unless flat, the chain below it: each
 * filtered or backing child in turn nested as the backing image, and
 * counted (bdrv_block_device_info's loop); each named as QEMU names it.
 */
async function chainInfo(node: BlockNode, flat: boolean, names: Map<BlockNode, NodeName>, skipImplicit: boolean): Promise<{ info: NodeImageInfo; depth: number }> {
  const info = await node.imageInfo();
  info.filename = names.get(node)!.filename;
  let depth = 0;
  if (flat) return { info, depth };
  let level = info;
  for (let c = filterOrCowChild(node); c; ) {
    depth++;
    // query-block (not query-named-block-nodes) looks through implicit filters down the chain, without counting them.
    const n = skipImplicit ? skipImplicitFilters(c) : c;
    const below = await n.imageInfo();
    below.filename = nodeNames(n, toQmpJson, names).get(n)!.filename;
    level.backingImage = below;
    level = below;
    c = filterOrCowChild(n);
  }
  return { info, depth };
}

/**
 * bdrv_block_device_info; `limits` are the I/O limits of the BlockBackend
 * query-block shows the node for: the averages are always there (0 without
 * limits), a burst and its length only when the burst is set, the op size
 * only when not 0, and the group only with limits.
 */
type BackendLimits = { cfg: ThrottleConfig; group: string } | undefined;
const LEGACY = LEGACY_LIMIT_NAMES;

function averages(limits: BackendLimits): Record<string, number> {
  return Object.fromEntries(LEGACY.map(([k, i]) => [k, limits?.cfg.buckets[i]!.avg ?? 0]));
}

function bursts(limits: BackendLimits): Record<string, unknown> {
  if (!limits) return {};
  const b = limits.cfg.buckets;
  const out: Record<string, unknown> = {};
  for (const [k, i] of LEGACY) if (b[i]!.max) out[`${k}_max`] = b[i]!.max;
  for (const [k, i] of LEGACY) if (b[i]!.max) out[`${k}_max_length`] = b[i]!.burstLength;
  if (limits.cfg.opSize) out['iops_size'] = limits.cfg.opSize;
  out['group'] = limits.group;
  return out;
}

export async function blockDeviceInfo(node: BlockNode, flat: boolean, limits?: BackendLimits, skipImplicit = false): Promise<Record<string, unknown>> {
  if (node.ejected) throw new QmpError('GenericError', `Block device ${node.nodeName} is ejected`);
  const names = namesOf(node);
  const { info, depth } = await chainInfo(node, flat, names, skipImplicit);
  const s = node.settings;
  const out: Record<string, unknown> = { file: info.filename, 'node-name': node.nodeName, ro: node.readOnly, drv: node.driver };
  // QEMU shows the backing node's name (bdrv_cow_bs), and counts the chain only when not asked for a flat list.
  const backing = cowChild(node);
  if (backing) out['backing_file'] = names.get(backing)!.filename;
  Object.assign(out, {
    backing_file_depth: depth,
    encrypted: info.encrypted === true,
    detect_zeroes: s.detectZeroes,
    ...averages(limits),
    image: imageInfo(info, !flat),
    ...bursts(limits),
    cache: { writeback: true, direct: s.cacheDirect, 'no-flush': s.cacheNoFlush },
    write_threshold: asInt64(node.writeStats.writeThreshold),
  });
  const bitmaps = node.dirtyBitmaps.all();
  if (bitmaps.length > 0) out['dirty-bitmaps'] = bitmaps.map(dirtyInfo);
  return out;
}

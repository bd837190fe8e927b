import { resolve } from 'node:path';
import type { EncryptInfo } from '../../image/types.js';
import { Qcow2Image } from '../../image/qcow2/image.js';
import type { BlockImage, ImageInfo } from '../../image/types.js';
import { listSnapshots, type Qcow2Snapshot } from '../../image/qcow2/snapshots.js';
import { sizeToStr } from '../../image/numfmt.js';
import { snapshotList } from '../../image/qcow2/snapshot-dump.js';
import { imageOptsTarget } from './image-opts.js';
import { fileProtocolPath } from '../../image/path-protocol.js';
import { actualBackingName, graphImageName } from './graph-open.js';
import { openForCli } from './open.js';
import { type ImgIo, ImgFailure, usageError } from './output.js';

export interface InfoArgs {
  format?: string;
  output?: string;
  backingChain: boolean;
  /** -U */
  forceShare?: boolean;
  /** --image-opts: the operand is an option string naming the image (for the top image only). */
  imageOpts?: boolean;
  args: string[];
}

/** What qemu-img info reports for one image, under the name qemu-img shows. */
interface Report {
  name: string;
  info: ImageInfo;
  actualSize: number;
  fullBacking?: string;
  /** qcow2 internal snapshots, absent when there are none. */
  snapshots?: Qcow2Snapshot[];
}

export function parseOutputFormat(output: string | undefined): 'human' | 'json' {
  if (output === undefined || output === 'human') return 'human';
  if (output === 'json') return 'json';
  throw new ImgFailure('--output must be used with human or json as argument.');
}

/**
 * `blockemu img info`. Like qemu-img, it opens only the named image (not its
 * backing file, which need not exist); --backing-chain then opens each
 * backing file in turn by the name qemu-img would show.
 */
export async function imgInfo(io: ImgIo, a: InfoArgs): Promise<number> {
  const dash = a.args.find((x) => x.startsWith('-') && x !== '-');
  if (dash !== undefined) throw usageError(`unrecognized option '${dash}'`);
  const fmt = parseOutputFormat(a.output);
  if (a.args.length !== 1) throw usageError('Expecting one image file name');
  const reports: Report[] = [];
  let name: string | undefined = a.args[0]!;
  let format = a.format;
  let forceShare = a.forceShare;
  let optstr: string | undefined;
  if (a.imageOpts) {
    optstr = name;
    ({ filename: name, format, forceShare } = await imageOptsTarget(io, name, format, forceShare === true));
  }
  const seen = new Set<string>();
  while (name !== undefined) {
    if (seen.has(resolve(name))) throw new ImgFailure(`Backing file '${name}' creates an infinite loop.`);
    seen.add(resolve(name));
    // BDRV_O_NO_BACKING | BDRV_O_NO_IO: only the header is looked at, so a qcow2 file is locked against writers but not read consistently.
    const img = await openForCli(name, { format, backing: false, forceShare, flags: { noIo: true }, displayName: optstr });
    optstr = undefined;
    const r = await describe(img, name);
    reports.push(r);
    name = a.backingChain ? r.fullBacking : undefined;
    format = r.info.backingFormat;
  }
  if (fmt === 'json') {
    const objs = reports.map(toJson);
    // QEMU's pretty printer opens and closes an empty array on two lines.
    const text = JSON.stringify(a.backingChain ? objs : objs[0], null, 4).replace(/^( *)(.*)\[\]/gm, (_, ind: string, pre: string) => `${ind}${pre}[\n${ind}]`);
    io.out(`${text}\n`);
  } else {
    io.out(reports.map(toHuman).join('\n'));
  }
  return 0;
}

async function describe(img: BlockImage, name: string): Promise<Report> {
  try {
    const info = img.info();
    // qemu-img lists a qcow2 image's persistent bitmaps as its directory has them.
    if (img instanceof Qcow2Image && info.formatSpecific?.type === 'qcow2') {
      const bitmaps = await img.bitmaps.describe();
      if (bitmaps.length > 0) info.formatSpecific = { ...info.formatSpecific, bitmaps };
    }
    const actualSize = await img.actualSize();
    // A file: name is shown as the file node has it, its prefix gone (raw_parse_filename); backing names are relative to that.
    const shown = graphImageName(img) ?? (name.startsWith('file:') ? fileProtocolPath(name) : name);
    const fullBacking = info.backingFilename !== undefined ? actualBackingName(img, shown, info.backingFilename) : undefined;
    const snapshots = img instanceof Qcow2Image && img.header.nbSnapshots > 0 ? await listSnapshots(img) : undefined;
    return { name: shown, info, actualSize, fullBacking, snapshots };
  } finally {
    await img.close();
  }
}

/** qemu-img's ImageInfo JSON, keys in the order qemu-img 7.2 prints them. */
function toJson(r: Report): Record<string, unknown> {
  const i = r.info;
  const o: Record<string, unknown> = {};
  if (i.backingFormat !== undefined) o['backing-filename-format'] = i.backingFormat;
  if (r.snapshots) {
    o['snapshots'] = r.snapshots.map((sn) => ({
      ...(sn.icount !== (1n << 64n) - 1n ? { icount: Number(sn.icount) } : {}),
      'vm-clock-nsec': Number(sn.vmClockNsec % 1_000_000_000n),
      name: sn.name,
      'date-sec': sn.dateSec,
      'date-nsec': sn.dateNsec,
      'vm-clock-sec': Number(sn.vmClockNsec / 1_000_000_000n),
      id: sn.id,
      'vm-state-size': Number(sn.vmStateSize),
    }));
  }
  o['virtual-size'] = i.virtualSize;
  o['filename'] = r.name;
  if (i.clusterSize !== undefined) o['cluster-size'] = i.clusterSize;
  o['format'] = i.format;
  if (r.actualSize >= 0) o['actual-size'] = r.actualSize;
  const fs = i.formatSpecific;
  // The luks format's is its header's QCryptoBlockInfoLUKS, without the union's format.
  if (fs?.type === 'luks') {
    const { format: _format, ...data } = encryptJson(fs.luks);
    o['format-specific'] = { type: 'luks', data };
  } else if (fs) {
    const encrypt = fs.encrypt ? { encrypt: encryptJson(fs.encrypt) } : {};
    const data: Record<string, unknown> =
      fs.compat === '0.10'
        ? { compat: fs.compat, 'compression-type': fs.compressionType, 'refcount-bits': fs.refcountBits, ...encrypt }
        : {
            compat: fs.compat,
            'compression-type': fs.compressionType,
            'lazy-refcounts': fs.lazyRefcounts,
            // Keys in qemu-img's (QDict) order.
            ...(fs.bitmaps ? { bitmaps: fs.bitmaps.map((b) => ({ flags: b.flags, name: b.name, granularity: b.granularity })) } : {}),
            'refcount-bits': fs.refcountBits,
            ...(fs.dataFile !== undefined ? { 'data-file': fs.dataFile } : {}),
            ...encrypt,
            ...(fs.dataFileRaw !== undefined ? { 'data-file-raw': fs.dataFileRaw } : {}),
            corrupt: fs.corrupt,
            'extended-l2': fs.extendedL2,
          };
    o['format-specific'] = { type: fs.type, data };
  }
  if (i.backingFilename !== undefined && r.fullBacking !== undefined) o['full-backing-filename'] = r.fullBacking;
  if (i.encrypted) o['encrypted'] = true;
  if (i.backingFilename !== undefined) o['backing-filename'] = i.backingFilename;
  o['dirty-flag'] = i.dirtyFlag ?? false;
  return o;
}

/** QCryptoBlockInfo as qemu-img prints it (its QDict order). */
function encryptJson(e: EncryptInfo): Record<string, unknown> {
  if (e.format === 'aes') return { format: 'aes' };
  return {
    'ivgen-alg': e.ivgenAlg,
    'hash-alg': e.hashAlg,
    'cipher-alg': e.cipherAlg,
    uuid: e.uuid,
    format: 'luks',
    'cipher-mode': e.cipherMode,
    slots: e.slots.map((s) => (s.active ? { active: true, iters: s.iters, 'key-offset': s.keyOffset, stripes: s.stripes } : { active: false, 'key-offset': s.keyOffset })),
    'payload-offset': e.payloadOffset,
    'master-key-iters': e.masterKeyIters,
  };
}

/** The same, as qemu-img's human dump of it (keys with spaces, lists as [n]:), at `indent`. */
function encryptHuman(e: EncryptInfo, indent: string): string[] {
  const lines: string[] = [];
  const walk = (v: unknown, key: string, pad: string) => {
    if (Array.isArray(v)) {
      lines.push(`${pad}${key}:`);
      v.forEach((x, i) => walk(x, `[${i}]`, `${pad}    `));
    } else if (typeof v === 'object' && v !== null) {
      lines.push(`${pad}${key}:`);
      for (const [k, x] of Object.entries(v)) walk(x, k.replaceAll('-', ' '), `${pad}    `);
    } else lines.push(`${pad}${key}: ${String(v)}`);
  };
  walk(encryptJson(e), 'encrypt', indent);
  return lines;
}

function toHuman(r: Report): string {
  const i = r.info;
  const lines = [
    `image: ${r.name}`,
    `file format: ${i.format}`,
    `virtual size: ${sizeToStr(i.virtualSize)} (${i.virtualSize} bytes)`,
    `disk size: ${r.actualSize >= 0 ? sizeToStr(r.actualSize) : 'unavailable'}`,
  ];
  if (i.encrypted) lines.push('encrypted: yes');
  if (i.clusterSize !== undefined) lines.push(`cluster_size: ${i.clusterSize}`);
  if (i.dirtyFlag) lines.push('cleanly shut down: no');
  if (i.backingFilename !== undefined) {
    const actual = r.fullBacking === undefined ? ' (cannot determine actual path)' : r.fullBacking !== i.backingFilename ? ` (actual path: ${r.fullBacking})` : '';
    lines.push(`backing file: ${i.backingFilename}${actual}`);
    if (i.backingFormat !== undefined) lines.push(`backing file format: ${i.backingFormat}`);
  }
  if (r.snapshots) lines.push(snapshotList(r.snapshots).slice(0, -1));
  const fs = i.formatSpecific;
  // The luks format's members at the top level, without the union's format.
  if (fs?.type === 'luks') lines.push('Format specific information:', ...encryptHuman(fs.luks, '').slice(1).filter((l) => l !== '    format: luks'));
  else if (fs) {
    lines.push('Format specific information:', `    compat: ${fs.compat}`, `    compression type: ${fs.compressionType}`);
    if (fs.compat !== '0.10') lines.push(`    lazy refcounts: ${fs.lazyRefcounts}`);
    if (fs.bitmaps) {
      lines.push('    bitmaps:');
      fs.bitmaps.forEach((b, i) => {
        lines.push(`        [${i}]:`, '            flags:', ...b.flags.map((f, j) => `                [${j}]: ${f}`));
        lines.push(`            name: ${b.name}`, `            granularity: ${b.granularity}`);
      });
    }
    lines.push(`    refcount bits: ${fs.refcountBits}`);
    if (fs.dataFile !== undefined) lines.push(`    data file: ${fs.dataFile}`);
    if (fs.encrypt) lines.push(...encryptHuman(fs.encrypt, '    '));
    if (fs.dataFileRaw !== undefined) lines.push(`    data file raw: ${fs.dataFileRaw}`);
    if (fs.compat !== '0.10') lines.push(`    corrupt: ${fs.corrupt}`, `    extended l2: ${fs.extendedL2}`);
  }
  return lines.map((l) => `${l}\n`).join('');
}

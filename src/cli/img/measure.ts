import { imageOptsTarget } from './image-opts.js';
import { Qcow2Image } from '../../image/qcow2/image.js';
import { listSnapshots } from '../../image/qcow2/snapshots.js';
import type { BlockImage } from '../../image/types.js';
import { Getopt } from '../getopt.js';
import { luksCreateOptions, type OptValue, parseCreateOptions, qcow2EncryptionOptions, str } from './create-opts.js';
import { type CreateEncryption, createLuksArea } from '../../image/crypto/create.js';
import { addObject } from './objects.js';
import { tryOpen } from './open.js';
import { type ImgIo, ImgFailure, PROG } from './output.js';
import { QEMU_FORMATS } from './formats.js';
import { INT64_MAX, parseQemuSize } from './size-arg.js';

export const MEASURE_USAGE = 'measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [--object objectdef] [--image-opts] [-f fmt] [-l snapshot_param] filename]';

const LONG_OPTIONS = [
  { name: 'help', hasArg: false },
  { name: 'image-opts', hasArg: false },
  { name: 'object', hasArg: true },
  { name: 'output', hasArg: true },
  { name: 'size', hasArg: true },
  { name: 'force-share', hasArg: false },
];

interface Measure {
  required: bigint;
  fullyAllocated: bigint;
  bitmaps?: bigint;
}

const roundUp = (v: bigint, to: bigint) => ((v + to - 1n) / to) * to;
const divUp = (v: bigint, by: bigint) => (v + by - 1n) / by;

/**
 * `blockemu img measure` (qemu-img 7.2's img_measure with the raw and qcow2
 * drivers' measure): the file size an image of the given size (--size), or
 * a copy of the given image, needs in the output format: "required" with
 * the data the image holds, "fully allocated" with every cluster; for a
 * qcow2 copy of a qcow2 image, what its persistent bitmaps add.
 */
export async function imgMeasure(io: ImgIo, args: readonly string[]): Promise<number> {
  let json = false;
  let format: string | undefined;
  let outFormat = 'raw';
  const options: string[] = [];
  let snapshot: string | undefined;
  let forceShare = false;
  let imageOpts = false;
  let size: bigint | undefined;
  // No ':' in front of the optstring: getopt itself reports a mistake and qemu-img prints its help (exit 0).
  const getopt = new Getopt('measure', args, 'hf:O:o:l:U', LONG_OPTIONS);
  for (const e of getopt) {
    if (e.kind !== 'option' || e.name === 'h' || e.name === 'help') {
      if (getopt.diagnostic) io.err(`measure: ${getopt.diagnostic}\n`);
      io.out(`usage: ${PROG} ${MEASURE_USAGE}\n`);
      return 0;
    }
    const v = e.value ?? '';
    switch (e.name) {
      case 'f':
        format = v;
        break;
      case 'O':
        outFormat = v;
        break;
      case 'o':
        options.push(v);
        break;
      case 'l':
        snapshot = v;
        break;
      case 'U':
      case 'force-share':
        forceShare = true;
        break;
      case 'object':
        addObject(v);
        break;
      case 'image-opts':
        imageOpts = true;
        break;
      case 'output':
        if (v === 'json') json = true;
        else if (v === 'human') json = false;
        else throw new ImgFailure('--output must be used with human or json as argument.');
        break;
      case 'size': {
        const r = parseQemuSize(v);
        if (!r.ok || r.value > INT64_MAX) {
          if (r.ok || r.reason === 'range') throw new ImgFailure(`Invalid image size specified. Must be between 0 and ${INT64_MAX}.`);
          throw new ImgFailure(['Invalid image size specified. You may use k, M, G, T, P or E suffixes for', 'kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.']);
        }
        size = r.value;
        break;
      }
    }
  }
  const operands = getopt.operands();
  if (operands.length > 1) throw new ImgFailure('At most one filename argument is allowed.');
  const filename = operands[0];
  if (filename === undefined && (imageOpts || format !== undefined || snapshot !== undefined)) throw new ImgFailure('--image-opts, -f, and -l require a filename argument.');
  if (filename !== undefined && size !== undefined) throw new ImgFailure('--size N cannot be used together with a filename.');
  if (filename === undefined && size === undefined) throw new ImgFailure('Either --size N or one filename must be specified.');
  let input: BlockImage | undefined;
  if (filename !== undefined) {
    const target = imageOpts ? await imageOptsTarget(io, filename, format, forceShare) : { filename, format, forceShare };
    const r = await tryOpen(target.filename, { format: target.format, readOnly: true, forceShare: target.forceShare });
    if ('inner' in r) throw new ImgFailure(`Could not open '${filename}': ${r.inner}`);
    input = r.image;
  }
  try {
    if (input && snapshot !== undefined) await loadSnapshot(input, snapshot);
    const m = await measure(outFormat, options, size, input);
    if (json) {
      const o: Record<string, number> = {};
      if (m.bitmaps !== undefined) o['bitmaps'] = Number(m.bitmaps);
      o['required'] = Number(m.required);
      o['fully-allocated'] = Number(m.fullyAllocated);
      io.out(`${JSON.stringify(o, null, 4)}\n`);
    } else {
      io.out(`required size: ${m.required}\nfully allocated size: ${m.fullyAllocated}\n`);
      if (m.bitmaps !== undefined) io.out(`bitmaps size: ${m.bitmaps}\n`);
    }
    return 0;
  } finally {
    await input?.close();
  }
}

/** -l: measuring an internal snapshot's view is not implemented; a missing one is refused as QEMU refuses it. */
async function loadSnapshot(input: BlockImage, spec: string): Promise<void> {
  const list = input instanceof Qcow2Image ? await listSnapshots(input) : undefined;
  if (!list) throw new ImgFailure('Failed to load snapshot: Block format does not support internal snapshots');
  if (!list.some((s) => s.id === spec || s.name === spec)) throw new ImgFailure("Failed to load snapshot: Can't find snapshot");
  throw new ImgFailure('-l (measuring an internal snapshot) is not supported by blockemu');
}

async function measure(outFormat: string, lists: string[], size: bigint | undefined, input: BlockImage | undefined): Promise<Measure> {
  if (!QEMU_FORMATS.has(outFormat)) throw new ImgFailure(`Unknown file format '${outFormat}'`);
  if (outFormat !== 'raw' && outFormat !== 'qcow2' && outFormat !== 'luks') throw new ImgFailure(`Block driver '${outFormat}' does not support size measurement`);
  let values: Map<string, OptValue>;
  try {
    values = parseCreateOptions(outFormat, lists, '');
  } catch (err) {
    if (err instanceof ImgFailure && err.lines[0]?.startsWith('Invalid parameter')) throw new ImgFailure([...err.lines, `Invalid options for file format '${outFormat}'`]);
    throw err;
  }
  const optSize = size ?? (values.get('size')?.value as bigint | undefined) ?? 0n;
  if (outFormat === 'raw') {
    const required = input ? roundUp(BigInt(input.size()), 512n) : roundUp(optSize, 512n);
    return { required, fullyAllocated: required };
  }
  if (outFormat === 'luks') {
    // block_crypto_measure: every sector is encrypted, allocated or not, so both sizes are the header's and the data's.
    const required = (await luksPayloadSize(luksCreateOptions(values))) + (input ? BigInt(input.size()) : optSize);
    return { required, fullyAllocated: required };
  }
  return measureQcow2(values, optSize, input);
}

/** qcow2_measure. */
async function measureQcow2(values: Map<string, OptValue>, optSize: bigint, input: BlockImage | undefined): Promise<Measure> {
  const extL2 = values.get('extended_l2')?.value === true;
  const cs = (values.get('cluster_size')?.value as bigint | undefined) ?? 65536n;
  const n = Number(cs);
  if (cs < 512n || cs > 2n << 20n || (n & (n - 1)) !== 0) throw new ImgFailure('Cluster size must be a power of two between 512 and 2048k');
  if (extL2 && cs < 16384n) throw new ImgFailure('Extended L2 entries are only supported with cluster sizes of at least 16384 bytes');
  const compat = str(values.get('compat'));
  if (compat !== undefined && compat !== '0.10' && compat !== '1.1') throw new ImgFailure(`Invalid compatibility level: '${compat}'`);
  const version = compat === '0.10' ? 2 : 3;
  const rb = (values.get('refcount_bits')?.value as bigint | undefined) ?? 16n;
  if (rb === 0n || rb > 64n || (rb & (rb - 1n)) !== 0n) throw new ImgFailure('Refcount width must be a power of two and may not exceed 64 bits');
  if (version < 3 && rb !== 16n) throw new ImgFailure('Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)');
  const prealloc = str(values.get('preallocation')) ?? 'off';
  if (!['off', 'metadata', 'falloc', 'full'].includes(prealloc)) throw new ImgFailure(`invalid parameter value: ${prealloc}`);
  const hasBacking = values.has('backing_file');
  // A LUKS-encrypted image's header and key material, in whole clusters.
  const enc = qcow2EncryptionOptions(values, (m) => new ImgFailure(m));
  const luksPayload = enc?.format === 'luks' ? roundUp(await luksPayloadSize(enc), cs) : 0n;
  const l2e = extL2 ? 16n : 8n;
  let virtualSize = roundUp(optSize, cs);
  if (divUp(virtualSize / cs, cs / l2e) * 8n > 32n << 20n) throw new ImgFailure('The image size is too large (try using a larger cluster size)');
  let required = 0n;
  if (input) {
    const ssize = roundUp(BigInt(input.size()), 512n);
    virtualSize = roundUp(ssize, cs);
    if (hasBacking) required = virtualSize;
    else required = await dataBytes(input, Number(ssize), Number(cs));
  }
  if (prealloc === 'full' || prealloc === 'falloc') required = virtualSize;
  const fullyAllocated = luksPayload + preallocSize(virtualSize, cs, BigInt(Math.log2(Number(rb))), extL2);
  const out: Measure = { required: fullyAllocated - virtualSize + required, fullyAllocated };
  if (version >= 3 && input instanceof Qcow2Image) out.bitmaps = await bitmapsSize(input, cs);
  return out;
}

/**
 * qcrypto_block_calculate_payload_offset: a LUKS header made (key
 * included, as QEMU's makes it, so a missing key fails here too) only to
 * learn its size.
 */
async function luksPayloadSize(enc: CreateEncryption): Promise<bigint> {
  try {
    return BigInt((await createLuksArea(enc)).bytes.length);
  } catch (err) {
    throw new ImgFailure(err instanceof Error ? err.message : String(err));
  }
}

/** The clusters of the input that hold data (zero and unallocated regions skipped), as qcow2_measure counts them. */
async function dataBytes(input: BlockImage, ssize: number, cs: number): Promise<bigint> {
  let required = 0;
  for (let offset = 0; offset < ssize; ) {
    const e = await input.blockStatus(offset, Math.min(ssize, input.size()) - offset);
    let pnum = e.length;
    if (pnum <= 0) break;
    if (!e.zero && e.data) {
      pnum = Math.ceil((offset + pnum) / cs) * cs - offset;
      required += (offset % cs) + pnum;
    }
    offset += pnum;
  }
  return BigInt(required);
}

/** qcow2_calc_prealloc_size: header, L2 and L1 tables, refcount structures and every data cluster. */
function preallocSize(total: bigint, cs: bigint, refcountOrder: bigint, extL2: boolean): bigint {
  const l2e = extL2 ? 16n : 8n;
  const aligned = roundUp(total, cs);
  let meta = cs;
  const nl2e = roundUp(aligned / cs, cs / l2e);
  meta += nl2e * l2e;
  const nl1e = roundUp((nl2e * l2e) / cs, cs / 8n);
  meta += nl1e * 8n;
  meta += refcountMetadataSize((meta + aligned) / cs, cs, refcountOrder);
  return meta + aligned;
}

/** qcow2_refcount_metadata_size without the generous increase: the fixed point where refcounts count themselves too. */
function refcountMetadataSize(clusters: bigint, cs: bigint, refcountOrder: bigint): bigint {
  const perTable = cs / 8n;
  const perBlock = (cs * 8n) / (1n << refcountOrder);
  let table = 0n;
  let blocks = 0n;
  let n = 0n;
  let last: bigint;
  do {
    last = n;
    blocks = divUp(clusters + table + blocks, perBlock);
    table = divUp(blocks, perTable);
    n = clusters + blocks + table;
  } while (n !== last);
  return (blocks + table) * cs;
}

/** qcow2_get_persistent_dirty_bitmap_size: each bitmap whole, its table, and the directory, in clusters. */
async function bitmapsSize(input: Qcow2Image, cs: bigint): Promise<bigint> {
  let total = 0n;
  let dir = 0n;
  const size = BigInt(input.size());
  for (const b of await input.bitmaps.describe()) {
    const bytes = divUp(divUp(size, BigInt(b.granularity)), 8n);
    const clusters = divUp(bytes, cs);
    total += clusters * cs + roundUp(clusters * 8n, cs);
    dir += roundUp(24n + BigInt(Buffer.byteLength(b.name)), 8n);
  }
  return total + roundUp(dir, cs);
}

import { imageOptsTarget } from './image-opts.js';
import { hasHelpOption, printAmendOptionHelp } from './option-help.js';
import { amendOptionTable } from '../../image/create-options.js';
import { BlockError } from '../../image/errors.js';
import { strerrorOf } from '../../image/errno.js';
import { type AmendRequest, amendQcow2, amendRest } from '../../image/qcow2/amend.js';
import { Qcow2Image } from '../../image/qcow2/image.js';
import { LuksImage } from '../../image/luks/image.js';
import type { LuksAmendOptions } from '../../image/crypto/amend.js';
import { amendQcow2Encryption, checkEncryptionAmendable } from '../../image/qcow2/crypto/amend.js';
import { imgSecretBytes, objectsReady } from './objects.js';
import { parseCacheMode } from '../io-args.js';
import { createOptionTable } from '../../image/create-options.js';
import { parseCreateOptions, splitOptionList, str } from './create-opts.js';
import { ImgGetopt } from './img-getopt.js';
import { probedRawWarning, tryOpen, withHint } from './open.js';
import { type ImgIo, ImgFailure, usageError } from './output.js';
import { Progress } from './progress.js';

export const AMEND_USAGE = 'amend [--object objectdef] [--image-opts] [-p] [-q] [-f fmt] [-t cache] [--force] -o options filename';

const LONG_OPTIONS = [
  { name: 'help', hasArg: false },
  { name: 'object', hasArg: true },
  { name: 'image-opts', hasArg: false },
  { name: 'force', hasArg: false },
];

/** qcow2's amend options (qcow2_amend_opts) but its key slots'; the rest of its creation options are creation-only. */
const AMENDABLE = new Set(amendOptionTable('qcow2')!.map((d) => d.name).filter((n) => !n.startsWith('encrypt.')));

/**
 * `blockemu img amend` (qemu-img 7.2's img_amend on qcow2): compat=0.10 or
 * 1.1 (zero clusters expanded on the way down), lazy_refcounts, size, and
 * backing_file/backing_fmt only as they are. refcount_bits changes are
 * refused (QEMU rewrites every refcount structure for them).
 */
export async function imgAmend(io: ImgIo, args: readonly string[]): Promise<number> {
  const lists: string[] = [];
  let format: string | undefined;
  let cache = 'writeback';
  let progressOn = false;
  let quiet = false;
  let force = false;
  const getopt = new ImgGetopt('amend', args, ':ho:f:t:pq', LONG_OPTIONS, AMEND_USAGE);
  for (const o of getopt) {
    switch (o.name) {
      case 'o':
        if (splitOptionList(o.value) === undefined) throw new ImgFailure(`Invalid option list: ${o.value}`);
        lists.push(o.value);
        break;
      case 'f':
        format = o.value;
        break;
      case 't':
        cache = o.value;
        break;
      case 'p':
        progressOn = true;
        break;
      case 'q':
        quiet = true;
        break;
      case 'force':
        force = true;
        break;
    }
  }
  // qemu-img makes its --object objects right after its option loop.
  await objectsReady();
  if (lists.length === 0) throw usageError('Must specify options (-o)');
  if (quiet) progressOn = false;
  const progress = new Progress(io, progressOn, 1);
  try {
    await amend(io, getopt.operands(), lists, format, cache, getopt.imageOpts, progress, force);
  } finally {
    progress.end();
  }
  return 0;
}

async function amend(io: ImgIo, operands: string[], lists: string[], format: string | undefined, cache: string, imageOpts: boolean, progress: Progress, force: boolean): Promise<void> {
  const pairs = lists.flatMap((l) => splitOptionList(l)!);
  // With -f the help needs no image; without, the image's format is probed first.
  if (format !== undefined && hasHelpOption(lists)) return void printAmendOptionHelp(io, format);
  if (operands.length !== 1) throw new ImgFailure('Expecting one image file name');
  const filename = operands[0]!;
  if (parseCacheMode(cache) === undefined) throw new ImgFailure(`Invalid cache option: ${cache}`);
  const target = imageOpts ? await imageOptsTarget(io, filename, format, false) : { filename, format };
  const open = async () => {
    const r = await tryOpen(target.filename, { format: target.format, readOnly: false, persistentBitmaps: true });
    if ('inner' in r) throw new ImgFailure(`Could not open '${filename}': ${r.inner}`);
    return r.image;
  };
  let image = await open();
  try {
    if (target.format === undefined && image.format === 'raw') io.err(probedRawWarning(filename));
    if (hasHelpOption(lists)) return void printAmendOptionHelp(io, image.format);
    if (image instanceof LuksImage) {
      const keys = luksAmendOptions(pairs, '', 'luks');
      progress.setAbsolute(0);
      await image.amendKeys(keys, force, imgSecretBytes).catch(amendFailure);
      progress.setAbsolute(100);
      return;
    }
    if (!(image instanceof Qcow2Image)) throw new ImgFailure(`Format driver '${image.format}' does not support option amendment`);
    const encryptPairs = pairs.filter(([k]) => k.startsWith('encrypt.'));
    let req = parseAmendOptions(pairs);
    req.progress = (p) => progress.setAbsolute(p);
    progress.setAbsolute(0);
    try {
      if (encryptPairs.length > 0) checkEncryptionAmendable(image);
      // A new refcount width leaves the open image's refcount cache stale: the rest is amended on the image reopened.
      while ((await amendQcow2(image as Qcow2Image, req)) === 'reopen') {
        await image.close();
        image = await open();
        req = amendRest(req);
      }
      // The key slots last, as qcow2_amend_options changes them after the rest.
      if (encryptPairs.length > 0) await amendQcow2Encryption(image as Qcow2Image, luksAmendOptions(encryptPairs, 'encrypt.', 'qcow2'), force, imgSecretBytes);
    } catch (err) {
      if (err instanceof BlockError && err.errno === undefined) throw new ImgFailure(err.message);
      const msg = err instanceof BlockError && err.code !== 'IO' ? err.message : strerrorOf(err);
      throw new ImgFailure(withHint(msg, err));
    }
    progress.setAbsolute(100);
  } finally {
    await image.close();
  }
}


/** An amend failure as qemu-img reports it: the message (and hint) for a refusal, strerror for an I/O error. */
function amendFailure(err: unknown): never {
  if (err instanceof BlockError && err.errno === undefined) throw new ImgFailure(err.message);
  const msg = err instanceof BlockError && err.code !== 'IO' ? err.message : strerrorOf(err);
  throw new ImgFailure(withHint(msg, err));
}

/** block_crypto_amend_opts_luks (the luks format's, or qcow2's encrypt.* ones): key slot changes. */
const LUKS_AMENDABLE = ['state', 'keyslot', 'old-secret', 'new-secret', 'iter-time'];

/**
 * QCryptoBlockAmendOptionsLUKS from `prefix`state, `prefix`keyslot, …
 * (qcow2_extract_crypto_opts strips the prefix before the visit, so its
 * words name the bare keys).
 */
function luksAmendOptions(pairs: Array<[string, string]>, prefix: string, fmt: 'luks' | 'qcow2'): LuksAmendOptions {
  const v = new Map<string, string>();
  for (const [key, value] of pairs) {
    const bare = key.slice(prefix.length);
    if (!key.startsWith(prefix) || !LUKS_AMENDABLE.includes(bare)) {
      if (createOptionTable(fmt).some((d) => d.name === key)) throw new ImgFailure(`Invalid parameter '${key}'\nThis option is only supported for image creation`);
      throw new ImgFailure(`Invalid parameter '${key}'`);
    }
    v.set(bare, value);
  }
  const num = (k: string): number | undefined => {
    const t = v.get(k);
    if (t === undefined) return undefined;
    if (!/^-?\d+$/.test(t)) throw new ImgFailure(`Parameter '${prefix}${k}' expects a number`);
    return Number(t);
  };
  const state = v.get('state');
  if (state === undefined) throw new ImgFailure("Parameter 'state' is missing");
  if (state !== 'active' && state !== 'inactive') throw new ImgFailure(`Parameter 'state' does not accept value '${state}'`);
  const o: LuksAmendOptions = { state };
  const keyslot = num('keyslot');
  const iterTime = num('iter-time');
  if (keyslot !== undefined) o.keyslot = keyslot;
  if (iterTime !== undefined) o.iterTime = iterTime;
  for (const [k, field] of [['old-secret', 'oldSecret'], ['new-secret', 'newSecret']] as const) {
    const t = v.get(k);
    if (t !== undefined) o[field] = t;
  }
  return o;
}

/** qemu_opts_do_parse against qcow2's amend options, and qemu-img's hint for a creation-only one. */
function parseAmendOptions(pairs: Array<[string, string]>): AmendRequest {
  for (const [key] of pairs) {
    if (AMENDABLE.has(key) || key.startsWith('encrypt.')) continue;
    if (createOptionTable('qcow2').some((d) => d.name === key)) throw new ImgFailure(`Invalid parameter '${key}'\nThis option is only supported for image creation`);
    throw new ImgFailure(`Invalid parameter '${key}'`);
  }
  // The encrypt.* key slot options are the crypto layer's (luksAmendOptions), not creation options.
  const rest = pairs.filter(([k]) => !k.startsWith('encrypt.'));
  const values = parseCreateOptions('qcow2', rest.length > 0 ? [rest.map(([k, v]) => `${k}=${v.replaceAll(',', ',,')}`).join(',')] : [], '');
  const req: AmendRequest = {};
  const compat = str(values.get('compat'));
  if (compat !== undefined) {
    if (compat === '0.10' || compat === 'v2') req.version = 2;
    else if (compat === '1.1' || compat === 'v3') req.version = 3;
    else throw new ImgFailure(`Unknown compatibility level ${compat}`);
  }
  if (values.has('lazy_refcounts')) req.lazyRefcounts = values.get('lazy_refcounts')!.value === true;
  const rb = values.get('refcount_bits')?.value as bigint | undefined;
  if (rb !== undefined) {
    if (rb === 0n || rb > 64n || (rb & (rb - 1n)) !== 0n) throw new ImgFailure('Refcount width must be a power of two and may not exceed 64 bits');
    req.refcountBits = Number(rb);
  }
  const size = values.get('size')?.value as bigint | undefined;
  if (size !== undefined) req.size = Number(size);
  if (values.has('backing_file')) req.backingFile = str(values.get('backing_file'));
  if (values.has('backing_fmt')) req.backingFormat = str(values.get('backing_fmt'));
  if (values.has('data_file')) req.dataFile = str(values.get('data_file'));
  if (values.has('data_file_raw')) req.dataFileRaw = values.get('data_file_raw')!.value === true;
  return req;
}

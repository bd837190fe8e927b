import { imageOptsTarget } from './image-opts.js';
import { BlockError } from '../../image/errors.js';
import { Qcow2Image } from '../../image/qcow2/image.js';
import { createSnapshot, deleteSnapshot, findSnapshotByName, gotoSnapshot, listSnapshots } from '../../image/qcow2/snapshots.js';
import type { BlockImage } from '../../image/types.js';
import { ImgGetopt } from './img-getopt.js';
import { probedRawWarning, tryOpen } from './open.js';
import { type ImgIo, ImgFailure, usageError } from './output.js';
import { snapshotList } from '../../image/qcow2/snapshot-dump.js';

export const SNAPSHOT_USAGE = 'snapshot [--object objectdef] [--image-opts] [-U] [-q] [-l | -a snapshot | -c snapshot | -d snapshot] filename';

const LONG_OPTIONS = [
  { name: 'help', hasArg: false },
  { name: 'object', hasArg: true },
  { name: 'image-opts', hasArg: false },
  { name: 'force-share', hasArg: false },
];

type Action = { op: 'list' } | { op: 'apply' | 'create' | 'delete'; name: string } | { op: 'none' };

/** errno as a negative number and strerror text, as qemu-img prints "-95 (Operation not supported)". */
const ERRNO: Record<string, [number, string]> = {
  ENOTSUP: [95, 'Operation not supported'],
  EFBIG: [27, 'File too large'],
  ENOENT: [2, 'No such file or directory'],
  EINVAL: [22, 'Invalid argument'],
  EIO: [5, 'Input/output error'],
  ENOSPC: [28, 'No space left on device'],
  EBUSY: [16, 'Device or resource busy'],
  EAGAIN: [11, 'Resource temporarily unavailable'],
};

function errnoOf(err: unknown): [number, string] {
  // A refcount at its maximum (refcount_bits=1 cannot share a cluster) is QEMU's EINVAL here.
  const code = err instanceof BlockError ? (err.errno ?? (err.code === 'INVALID_ARGUMENT' ? 'EINVAL' : undefined)) : undefined;
  return (code !== undefined ? ERRNO[code] : undefined) ?? [5, err instanceof Error ? err.message : String(err)];
}

/**
 * `blockemu img snapshot` (qemu-img 7.2's img_snapshot): lists, creates,
 * applies and deletes a qcow2 image's internal snapshots, written as
 * QEMU's qcow2 driver writes them. No -f: qemu-img 7.2's snapshot probes.
 */
export async function imgSnapshot(io: ImgIo, args: readonly string[]): Promise<number> {
  let action: Action = { op: 'none' };
  let quiet = false;
  const getopt = new ImgGetopt('snapshot', args, ':la:c:d:hqU', LONG_OPTIONS, SNAPSHOT_USAGE);
  const set = (a: Action) => {
    if (action.op !== 'none') throw usageError("Cannot mix '-l', '-a', '-c', '-d'");
    action = a;
  };
  for (const o of getopt) {
    switch (o.name) {
      case 'l':
        set({ op: 'list' });
        break;
      case 'a':
        set({ op: 'apply', name: o.value });
        break;
      case 'c':
        set({ op: 'create', name: o.value });
        break;
      case 'd':
        set({ op: 'delete', name: o.value });
        break;
      case 'q':
        quiet = true;
        break;
    }
  }
  void quiet;
  const operands = getopt.operands();
  if (operands.length !== 1) throw usageError('Expecting one image file name');
  const filename = operands[0]!;
  const target = getopt.imageOpts ? await imageOptsTarget(io, filename, undefined, getopt.forceShare) : { filename, format: undefined, forceShare: getopt.forceShare };
  const act = action as Action;
  const readOnly = act.op === 'list';
  const r = await tryOpen(target.filename, { format: target.format, readOnly, forceShare: target.forceShare, persistentBitmaps: !readOnly });
  if ('inner' in r) throw new ImgFailure(`Could not open '${filename}': ${r.inner}`);
  const image = r.image;
  if (!readOnly && target.format === undefined && image.format === 'raw') io.err(probedRawWarning(filename));
  try {
    return await perform(io, image, act, filename);
  } finally {
    await image.close();
  }
}

async function perform(io: ImgIo, image: BlockImage, action: Action, rawName: string): Promise<number> {
  const qcow2 = image instanceof Qcow2Image ? image : undefined;
  switch (action.op) {
    case 'none':
      return 0;
    case 'list':
      // A format without snapshots lists nothing (bdrv_snapshot_list fails, dump_snapshots prints nothing).
      if (qcow2) io.out(snapshotList(await listSnapshots(qcow2)));
      return 0;
    case 'create': {
      const name = action.name;
      try {
        if (!qcow2) throw new BlockError('UNSUPPORTED', 'Operation not supported', { errno: 'ENOTSUP' });
        const now = Date.now();
        await createSnapshot(qcow2, { name, dateSec: Math.floor(now / 1000), dateNsec: (now % 1000) * 1_000_000 });
      } catch (err) {
        const [n, text] = errnoOf(err);
        throw new ImgFailure(`Could not create snapshot '${name}': -${n} (${text})`);
      }
      return 0;
    }
    case 'apply': {
      const name = action.name;
      if (!qcow2) {
        // QEMU closes the raw node and opens it again around trying its file: the warning comes twice.
        if (image.format === 'raw') io.err(probedRawWarning(rawName));
        throw new ImgFailure(`Could not apply snapshot '${name}': Block driver does not support snapshots`);
      }
      // bdrv_snapshot_goto: the bitmaps qemu-img loaded would no longer describe the data.
      if ((await qcow2.bitmaps.describe()).length > 0) throw new ImgFailure(`Could not apply snapshot '${name}': Device has active dirty bitmaps`);
      try {
        await gotoSnapshot(qcow2, name);
      } catch (err) {
        throw new ImgFailure(`Could not apply snapshot '${name}': Failed to load snapshot: ${errnoOf(err)[1]}`);
      }
      return 0;
    }
    case 'delete': {
      const name = action.name;
      const sn = qcow2 ? await findSnapshotByName(qcow2, name) : undefined;
      if (!qcow2 || !sn) throw new ImgFailure(`Could not delete snapshot '${name}': snapshot not found`);
      try {
        await deleteSnapshot(qcow2, sn.id, sn.name);
      } catch (err) {
        throw new ImgFailure(`Could not delete snapshot '${name}': ${err instanceof Error ? err.message : String(err)}`);
      }
      return 0;
    }
  }
}

import { BlockError } from '../../image/errors.js';
import { Qcow2Image } from '../../image/qcow2/image.js';
import { loadSnapshotTmp } from '../../image/qcow2/snapshots.js';
import type { BlockImage } from '../../image/types.js';
import { splitOptionList } from './create-opts.js';
import { ImgFailure } from './output.js';

/**
 * `qemu-img convert -l`: the source is read as one of its internal
 * snapshots holds it (bdrv_snapshot_load_tmp). The parameter is
 * `snapshot.id=ID,snapshot.name=NAME` (either or both) or a bare id or
 * name, tried as an id first.
 */
export type SnapshotParam = { id?: string; name?: string } | { idOrName: string };

/** Parsed as the option loop does: a `snapshot.` list with QemuOpts' refusal, else the text names the snapshot. */
export function parseSnapshotParam(text: string): SnapshotParam {
  if (!text.startsWith('snapshot.')) return { idOrName: text };
  const bad = (first: string) => new ImgFailure([first, `Failed in parsing snapshot param '${text}'`]);
  const pairs = splitOptionList(text);
  if (!pairs) throw bad(`Invalid parameter ''`);
  const p: { id?: string; name?: string } = {};
  for (const [key, value] of pairs) {
    if (key === 'snapshot.id') p.id = value;
    else if (key === 'snapshot.name') p.name = value;
    else throw bad(`Invalid parameter '${key}'`);
  }
  return p;
}

/** After the sources are open: the first one reads the snapshot, as qemu-img convert loads it, in QEMU's order and words. */
export async function loadSourceSnapshot(img: BlockImage, p: SnapshotParam, sources: number): Promise<void> {
  if ('idOrName' in p && sources > 1) throw new ImgFailure('No support for concatenating multiple snapshot');
  const fail = (msg: string) => new ImgFailure(`Failed to load snapshot: ${msg}`);
  if (!('idOrName' in p) && p.id === undefined && p.name === undefined) throw fail('snapshot_id and name are both NULL');
  // qemu-img's BlockBackends have no name, so the device in the message is ''.
  if (!(img instanceof Qcow2Image)) throw fail(`Block format '${img.format}' used by device '' does not support temporarily loading internal snapshots`);
  try {
    if ('idOrName' in p) {
      // bdrv_snapshot_load_tmp_by_id_or_name: as an id, then (not found) as a name.
      await loadSnapshotTmp(img, p.idOrName, undefined).catch((err: unknown) => {
        if (err instanceof BlockError && (err.errno === 'ENOENT' || err.errno === 'EINVAL')) return loadSnapshotTmp(img, undefined, p.idOrName);
        throw err;
      });
    } else {
      await loadSnapshotTmp(img, p.id, p.name);
    }
  } catch (err) {
    if (err instanceof BlockError) throw fail(err.message);
    throw err;
  }
}

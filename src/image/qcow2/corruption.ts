import { BlockError } from '../errors.js';
import { INCOMPAT_CORRUPT } from './header.js';
import type { Qcow2Image } from './image.js';

/** What qcow2_signal_corruption reports: its message, the host range concerned where known, whether it was fatal. */
export interface CorruptionReport {
  message: string;
  offset?: number;
  size?: number;
  fatal: boolean;
}

/** C's "%#" PRIx64, as QEMU's corruption messages print offsets and indexes: 0 stays 0. */
export const hex = (n: number): string => (n === 0 ? '0' : `0x${n.toString(16)}`);

const HDR_OFF_INCOMPAT = 72;

/**
 * An image found corrupt while in use, handled as qcow2_signal_corruption
 * handles it. The first finding is reported (to `onReport`: the node turns
 * it into BLOCK_IMAGE_CORRUPTED) and later ones are not, unless a fatal one
 * follows non-fatal ones. A finding is fatal only on a writable image:
 * then the image is marked corrupt in its header (it will not open
 * read-write again until repaired) and serves no more requests, as QEMU
 * takes the driver away from its node — so nothing it still holds in
 * memory is written either. The request that met the corruption fails
 * with EIO; those after a fatal finding with ENOMEDIUM.
 */
export class Qcow2Corruption {
  /** A fatal corruption was found: the image serves no more requests. */
  gone = false;
  onReport: ((r: CorruptionReport) => void) | undefined;
  /** Where the line QEMU prints goes (tests may catch it). */
  static warn: (line: string) => void = (line) => void process.stderr.write(line);
  /** What error_report puts before a line the driver reports that way: the program's name (a tool sets it). */
  static reportPrefix = '';
  private signaled = false;
  private marking: Promise<void> | undefined;

  constructor(private readonly img: Qcow2Image) {}

  /** Reports a finding (if it is to be reported) and returns the error the request fails with. */
  signal(fatal: boolean, message: string, where?: { offset: number; size: number }): BlockError {
    const img = this.img;
    fatal &&= img.refcounts !== undefined;
    const err = new BlockError('INVALID_IMAGE', `'${img.filename}': ${message}`, { errno: 'EIO' });
    if (this.signaled && (!fatal || this.marked)) return err;
    this.signaled = true;
    // On stderr as QEMU's driver prints it, whoever uses the image (qemu-io, qemu-img and the daemons alike).
    Qcow2Corruption.warn(
      fatal
        ? `qcow2: Marking image as corrupt: ${message}; further corruption events will be suppressed\n`
        : `qcow2: Image is corrupt: ${message}; further non-fatal corruption events will be suppressed\n`,
    );
    this.onReport?.({ message, ...(where ? { offset: where.offset, size: where.size } : {}), fatal });
    if (fatal) {
      this.gone = true;
      this.marking = this.markCorrupt().catch(() => undefined);
    }
    return err;
  }

  private get marked(): boolean {
    return (this.img.header.incompatibleFeatures & INCOMPAT_CORRUPT) !== 0n;
  }

  /**
   * qcow2_mark_corrupt: the corrupt bit set in the header, which QEMU
   * writes as one whole header cluster (a version 2 header has no field
   * for it: the cluster is written as it is).
   */
  private async markCorrupt(): Promise<void> {
    const img = this.img;
    img.header.incompatibleFeatures |= INCOMPAT_CORRUPT;
    const head = await img.file.read(0, img.layout.clusterSize);
    if (img.header.version === 3) new DataView(head.buffer, head.byteOffset).setBigUint64(HDR_OFF_INCOMPAT, img.header.incompatibleFeatures);
    await img.file.write(0, head);
  }

  /** The error of a request to an image that is gone (QEMU's node without a driver). */
  goneError(): BlockError {
    return new BlockError('IO', 'No medium found', { errno: 'ENOMEDIUM' });
  }

  /** Resolves once the corrupt mark is on disk (or failed to get there): closing waits for it. */
  settled(): Promise<void> {
    return this.marking ?? Promise.resolve();
  }
}

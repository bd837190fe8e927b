import type { ByteFile } from '../byte-file.js';
import { COMPAT_LAZY_REFCOUNTS, HDR_OFF_INCOMPAT, INCOMPAT_DIRTY, type Qcow2Header } from './header.js';

/**
 * Lazy refcounts (QEMU's use_lazy_refcounts): the first allocating write
 * marks the image dirty (qcow2_mark_dirty, on disk before its L2 entry
 * changes), after which flushes leave refcount updates in memory
 * (qcow2_need_accurate_refcounts is false). A clean close writes them and
 * clears the bit (qcow2_mark_clean). After a crash the dirty bit makes the
 * next read-write open rebuild what was lost, as QEMU's open does.
 */
export class LazyRefcounts {
  /** Whether allocating writes go lazy: the header's compat bit, or the node's lazy-refcounts option. */
  enabled: boolean;

  constructor(
    private readonly header: Qcow2Header,
    private readonly file: ByteFile,
  ) {
    this.enabled = header.version >= 3 && (header.compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n;
  }

  /** qcow2_need_accurate_refcounts: flushes write the refcount blocks unless the image is dirty. */
  get accurate(): boolean {
    return (this.header.incompatibleFeatures & INCOMPAT_DIRTY) === 0n;
  }

  /** Before an allocating write links its clusters into an L2 table (qcow2_alloc_cluster_link_l2). */
  async beforeLink(): Promise<void> {
    if (!this.enabled || !this.accurate) return;
    // bdrv_pwrite_sync of the feature bits: only once it is on disk is the image treated as dirty.
    await this.writeIncompatible(this.header.incompatibleFeatures | INCOMPAT_DIRTY);
    this.header.incompatibleFeatures |= INCOMPAT_DIRTY;
  }

  /** qcow2_mark_clean: the bit cleared in memory, everything written (`flushAll` writes refcounts again), then on disk. */
  async markClean(flushAll: () => Promise<void>): Promise<void> {
    if (this.accurate) return;
    this.header.incompatibleFeatures &= ~INCOMPAT_DIRTY;
    await flushAll();
    await this.writeIncompatible(this.header.incompatibleFeatures);
  }

  private async writeIncompatible(bits: bigint): Promise<void> {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, bits);
    await this.file.write(HDR_OFF_INCOMPAT, b);
    await this.file.flush();
  }
}

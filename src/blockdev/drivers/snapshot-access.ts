import { BlockError } from '../../image/errors.js';
import { PERM_ALL } from '../../image/perm.js';
import type { Extent } from '../../image/types.js';
import type { NodeChild, PermPair } from '../child.js';
import { FILE_NAMING, type NamePolicy } from '../filename.js';
import { BlockNode, type NodeImageInfo } from '../node.js';
import { snapshotApi } from '../snapshot-api.js';

/** snapshot_access_child_perm: nothing taken, everything shared — the snapshot API needs no permission. */
export const SNAPSHOT_ACCESS_CHILD_PERM: PermPair = { perm: 0, shared: PERM_ALL };

const notSupported = () => new BlockError('UNSUPPORTED', 'Operation not supported', { errno: 'ENOTSUP' });

/**
 * The `snapshot-access` driver (block/snapshot-access.c): a node over a
 * copy-before-write node (`file`) that shows the point-in-time view the
 * latter preserves, for a fleecing export. Reads, block status and
 * discard go to the file's snapshot API (ENOTSUP for any other driver,
 * EACCES where the view holds nothing any more); writes and zero writes
 * are refused with ENOTSUP. Not a filter: its file is data.
 */
export class SnapshotAccessNode extends BlockNode {
  readonly driver = 'snapshot-access';

  constructor(
    name: string,
    private readonly fileLink: NodeChild,
    readOnly: boolean,
  ) {
    super(name, readOnly, [fileLink]);
  }

  private get file(): BlockNode {
    return this.fileLink.node;
  }

  size(): number {
    return this.file.size();
  }

  override childPerm(): PermPair {
    return { ...SNAPSHOT_ACCESS_CHILD_PERM };
  }

  override get namePolicy(): NamePolicy {
    return FILE_NAMING;
  }

  /** No bdrv_reopen_prepare in QEMU's driver. */
  override get supportsReopen(): boolean {
    return false;
  }

  protected async doRead(offset: number, length: number): Promise<Uint8Array> {
    const buf = new Uint8Array(length);
    await snapshotApi(this.file).snapshotReadInto(buf, offset);
    return buf;
  }
  protected override doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    return snapshotApi(this.file).snapshotReadInto(buf, offset);
  }
  blockStatus(offset: number, length: number): Promise<Extent> {
    return snapshotApi(this.file).snapshotBlockStatus(offset, length);
  }
  protected doWrite(): Promise<void> {
    return Promise.reject(notSupported());
  }
  protected doWriteZeroes(): Promise<void> {
    return Promise.reject(notSupported());
  }
  protected doDiscard(offset: number, length: number): Promise<void> {
    return snapshotApi(this.file).snapshotDiscard(offset, length);
  }
  /** Nothing of its own to flush, and it holds no write permission on its file, so the flush stops here (bdrv_co_flush). */
  protected async doFlush(): Promise<void> {}

  /**
   * A copy-on-read prefetch (NBD's CACHE) finds the whole view allocated
   * (bdrv_is_allocated), so there is nothing to store; what the view does
   * not hold fails as its block status does.
   */
  override async prefetch(offset: number, length: number): Promise<void> {
    for (let at = offset; at < offset + length; ) {
      const e = await this.blockStatus(at, offset + length - at);
      at += Math.max(1, e.length);
    }
  }

  /** No bdrv_get_info: neither cluster size nor dirty flag; the allocated size is the file's (bdrv_sum_allocated_file_size). */
  async imageInfo(): Promise<NodeImageInfo> {
    const f = await this.file.imageInfo();
    return { filename: f.filename, format: this.driver, virtualSize: this.size(), ...(f.actualSize !== undefined ? { actualSize: f.actualSize } : {}), dirtyFlag: null };
  }

  protected async doClose(): Promise<void> {}
}

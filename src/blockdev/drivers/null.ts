import { checkRequest } from '../../image/request.js';
import type { Extent } from '../../image/types.js';
import type { NamePolicy } from '../filename.js';
import { BlockNode, type NodeImageInfo, type WriteFlags, type ZeroFlags } from '../node.js';

/** "null-co://" unless size or read-zeroes make it another node (null_refresh_filename). */
const NULL_NAMING: NamePolicy = {
  protocol: true,
  strong: ['size', 'read-zeroes'],
  exactName: (node, options) => (Object.keys(options).every((k) => k === 'filename' || k === 'driver' || k === 'latency-ns') ? `${node.driver}://` : ''),
};

/**
 * `null-co` / `null-aio`: a device that stores nothing. Reads return zeroes
 * (QEMU leaves the buffer untouched unless read-zeroes is set; zeroes are
 * the deterministic choice), writes succeed and vanish.
 */
export class NullNode extends BlockNode {
  constructor(
    name: string,
    readonly driver: 'null-co' | 'null-aio',
    private readonly bytes: number,
    private readonly readZeroes: boolean,
    private readonly latencyNs: number,
    readOnly = false,
  ) {
    super(name, readOnly);
  }

  override get namePolicy(): NamePolicy {
    return NULL_NAMING;
  }

  size(): number {
    return this.bytes;
  }

  private async delay(): Promise<void> {
    if (this.latencyNs > 0) await new Promise((r) => setTimeout(r, this.latencyNs / 1e6));
  }

  protected async doRead(offset: number, length: number): Promise<Uint8Array> {
    checkRequest('read', offset, length, this.bytes);
    await this.delay();
    return new Uint8Array(length);
  }
  /** Into the caller's buffer: a memset, not a fresh zeroed buffer copied over (a 1 GiB backup of null-co took seconds). */
  protected override async doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    checkRequest('read', offset, buf.length, this.bytes);
    await this.delay();
    buf.fill(0);
  }
  /** null-co takes FUA itself (supported_write_flags: there is nothing to make stable). */
  protected override get supportsFua(): boolean {
    return true;
  }
  protected async doWrite(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    checkRequest('write', offset, data.length, this.bytes);
    await this.delay();
  }
  protected async doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    checkRequest('write zeroes', offset, length, this.bytes);
    await this.delay();
  }
  protected async doDiscard(): Promise<void> {
    await this.delay();
  }
  protected async doFlush(): Promise<void> {}

  async blockStatus(offset: number, length: number): Promise<Extent> {
    checkRequest('block status', offset, length, this.bytes);
    // null_co_block_status: only OFFSET_VALID, and ZERO with read-zeroes; the block layer counts a range allocated only
    // when it is data or zeroes, so without read-zeroes nothing is (a backup with sync=top copies nothing, as QEMU's).
    return this.readZeroes ? { offset, length, data: false, zero: true, allocated: true, depth: 0, hostOffset: offset } : { offset, length, data: false, zero: false, allocated: false, depth: 0 };
  }

  async imageInfo(): Promise<NodeImageInfo> {
    // null has no bdrv_get_info (no dirty flag shown) and allocates nothing.
    return { filename: `${this.driver}://`, format: this.driver, virtualSize: this.bytes, actualSize: 0, dirtyFlag: null };
  }

  protected async doClose(): Promise<void> {}
}

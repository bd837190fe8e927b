import { checkRequest } from '../../image/request.js';
import type { Extent } from '../../image/types.js';
import { BlockNode, type NodeImageInfo, type WriteFlags, type ZeroFlags } from '../node.js';

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
  ) {
    super(name, false);
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
  /** null-co takes FUA itself (there is nothing to make stable). */
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
    return { offset, length, data: false, zero: this.readZeroes, allocated: true, depth: 0, hostOffset: offset };
  }

  async imageInfo(): Promise<NodeImageInfo> {
    return { filename: `${this.driver}://`, format: this.driver, virtualSize: this.bytes };
  }

  protected async doClose(): Promise<void> {}
}

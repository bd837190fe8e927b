import { HostFile } from '../../image/file.js';
import { checkRequest, ZERO_CHUNK } from '../../image/request.js';
import type { Extent } from '../../image/types.js';
import { BlockNode, type NodeImageInfo, type WriteFlags, type ZeroFlags } from '../node.js';

/**
 * The `file` protocol driver: a host file as bytes. Its size is the file's
 * length, and writes past the end grow it (a format driver above allocates
 * by writing there), as QEMU's file-posix does.
 */
export class FileNode extends BlockNode {
  readonly driver = 'file';
  private length: number;

  private constructor(
    name: string,
    readonly file: HostFile,
    length: number,
  ) {
    super(name, file.readOnly);
    this.length = length;
  }

  static async open(name: string, filename: string, readOnly: boolean): Promise<FileNode> {
    const file = await HostFile.open(filename, { readOnly });
    return new FileNode(name, file, await file.size());
  }

  get filename(): string {
    return this.file.path;
  }

  size(): number {
    return this.length;
  }

  protected doRead(offset: number, length: number): Promise<Uint8Array> {
    return this.file.read(offset, length);
  }

  protected async doWrite(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    await this.file.write(offset, data);
    this.length = Math.max(this.length, offset + data.length);
    if (flags.fua) await this.file.flush();
  }

  protected async doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    for (let off = offset; off < offset + length; off += ZERO_CHUNK.length) {
      await this.file.write(off, ZERO_CHUNK.subarray(0, Math.min(ZERO_CHUNK.length, offset + length - off)));
    }
    this.length = Math.max(this.length, offset + length);
  }

  /** Discard is advisory; Node has no hole punching, so the bytes stay (QEMU may keep them too). */
  protected async doDiscard(): Promise<void> {
  }

  protected doFlush(): Promise<void> {
    return this.file.flush();
  }

  async blockStatus(offset: number, length: number): Promise<Extent> {
    checkRequest('block status', offset, length, this.length);
    return { offset, length, data: true, zero: false, allocated: true, depth: 0, hostOffset: offset, filename: this.filename };
  }

  async imageInfo(): Promise<NodeImageInfo> {
    return { filename: this.filename, format: 'file', virtualSize: this.length, actualSize: await this.file.allocatedBytes() };
  }

  protected doClose(): Promise<void> {
    return this.file.close();
  }
}

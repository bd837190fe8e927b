import { BlockError } from '../../image/errors.js';
import { checkRequest } from '../../image/request.js';
import type { Extent } from '../../image/types.js';
import { type NodeChild, type PermPair, rawChildPerm } from '../child.js';
import type { NamePolicy } from '../filename.js';
import { BlockNode, type NodeImageInfo, type StatusOptions, type WriteFlags, type ZeroFlags } from '../node.js';
import { type ReopenPlan, writableAfter } from '../permissions.js';

/** A window of the file (offset, size) is not the file: those make a json: name. */
const RAW_NAMING: NamePolicy = { protocol: false, strong: ['offset', 'size'] };

/**
 * The `raw` format driver (block/raw-format.c): its `file` child's bytes,
 * optionally a window of them (offset, size). Announces read_aio and
 * write_aio on the child before each request, which is what arms blkdebug
 * rules below it.
 */
export class RawNode extends BlockNode {
  // Methods are async so that range errors reject rather than throw.
  readonly driver = 'raw';

  private file: BlockNode;

  constructor(
    name: string,
    fileLink: NodeChild,
    private readonly offset: number,
    private readonly fixedSize: number | undefined,
    readOnly: boolean,
  ) {
    super(name, readOnly, [fileLink]);
    const file = (this.file = fileLink.node);
    // raw_apply_options' checks and words.
    const real = file.size();
    if (offset > real) throw new BlockError('INVALID_ARGUMENT', `Offset (${offset}) cannot be greater than size of the containing file (${real})`);
    if (fixedSize !== undefined && real - offset < fixedSize) {
      throw new BlockError('INVALID_ARGUMENT', `The sum of offset (${offset}) and size (${fixedSize}) has to be smaller or equal to the  actual size of the containing file (${real})`);
    }
    if (fixedSize !== undefined && fixedSize % 512 !== 0) throw new BlockError('INVALID_ARGUMENT', 'Specified size is not multiple of 512');
  }

  override get namePolicy(): NamePolicy {
    return RAW_NAMING;
  }

  size(): number {
    return this.fixedSize ?? this.file.size() - this.offset;
  }

  override async childReplaced(c: NodeChild, node: BlockNode): Promise<void> {
    if (c.name === 'file') this.file = node;
  }

  override childPerm(c: NodeChild, perm: number, shared: number, plan?: ReopenPlan): PermPair {
    return rawChildPerm(c.role, writableAfter(this, plan), perm, shared);
  }

  protected async doRead(offset: number, length: number): Promise<Uint8Array> {
    checkRequest('read', offset, length, this.size());
    this.file.debugEvent('read_aio');
    return this.file.read(this.offset + offset, length);
  }
  protected override async doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    checkRequest('read', offset, buf.length, this.size());
    this.file.debugEvent('read_aio');
    return this.file.readInto(buf, this.offset + offset);
  }
  protected async doWrite(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    checkRequest('write', offset, data.length, this.size());
    this.file.debugEvent('write_aio');
    return this.file.write(this.offset + offset, data, flags);
  }
  protected async doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    checkRequest('write zeroes', offset, length, this.size());
    return this.file.writeZeroes(this.offset + offset, length, flags);
  }
  protected async doDiscard(offset: number, length: number): Promise<void> {
    checkRequest('discard', offset, length, this.size());
    return this.file.discard(this.offset + offset, length);
  }
  protected async doFlush(): Promise<void> {
    return this.file.flush();
  }
  async blockStatus(offset: number, length: number, opts?: StatusOptions): Promise<Extent> {
    checkRequest('block status', offset, length, this.size());
    const e = await this.file.blockStatus(this.offset + offset, length, opts);
    return { ...e, offset, hostOffset: this.offset + offset };
  }
  async imageInfo(): Promise<NodeImageInfo> {
    const f = await this.file.imageInfo();
    return { filename: f.filename, format: 'raw', virtualSize: this.size(), actualSize: f.actualSize };
  }
  protected async doClose(): Promise<void> {}
}

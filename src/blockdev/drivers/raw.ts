import { BlockError } from '../../image/errors.js';
import { checkRequest } from '../../image/request.js';
import type { Extent } from '../../image/types.js';
import type { Preallocation } from '../../image/types.js';
import { type NodeChild, type PermPair, rawChildPerm } from '../child.js';
import type { NamePolicy } from '../filename.js';
import { BlockNode, type NodeImageInfo, type StatusOptions, type WriteFlags, type ZeroFlags } from '../node.js';
import { absorb } from '../options.js';
import { type ReopenPlan, writableAfter } from '../permissions.js';
import type { ReopenState, StagedReopen } from '../reopen-driver.js';

/** raw_apply_options' checks and words for a window of a file of `real` bytes. */
function checkWindow(real: number, offset: number, size: number | undefined): void {
  if (offset > real) throw new BlockError('INVALID_ARGUMENT', `Offset (${offset}) cannot be greater than size of the containing file (${real})`);
  if (size !== undefined && real - offset < size) {
    throw new BlockError('INVALID_ARGUMENT', `The sum of offset (${offset}) and size (${size}) has to be smaller or equal to the  actual size of the containing file (${real})`);
  }
  if (size !== undefined && size % 512 !== 0) throw new BlockError('INVALID_ARGUMENT', 'Specified size is not multiple of 512');
}

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
    private offset: number,
    private fixedSize: number | undefined,
    readOnly: boolean,
  ) {
    super(name, readOnly, [fileLink]);
    this.file = fileLink.node;
    checkWindow(this.file.size(), offset, fixedSize);
  }

  override get mutableOptions(): readonly string[] {
    return ['offset', 'size'];
  }

  /** raw_reopen_prepare: a new window of the file, checked against the file as it is; it takes effect at commit. */
  override async prepareReopen(state: ReopenState): Promise<StagedReopen> {
    const opts = absorb(state.options, ['offset', 'size']);
    const offset = Number(opts.get('offset') ?? 0);
    const size = opts.has('size') ? Number(opts.get('size')) : undefined;
    checkWindow(this.file.size(), offset, size);
    return {
      commit: () => {
        this.offset = offset;
        this.fixedSize = size;
      },
    };
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

  /** raw_co_truncate: a fixed window cannot change; otherwise the file is resized, the offset kept before it. */
  protected override async doResize(newSize: number, prealloc: Preallocation): Promise<void> {
    if (this.fixedSize !== undefined) throw new BlockError('UNSUPPORTED', 'Cannot resize fixed-size raw disks', { errno: 'ENOTSUP' });
    if (Number.MAX_SAFE_INTEGER - newSize < this.offset) throw new BlockError('INVALID_ARGUMENT', 'Disk size too large for the chosen offset', { errno: 'EINVAL' });
    await this.file.resize(newSize + this.offset, prealloc);
  }

  override childPerm(c: NodeChild, perm: number, shared: number, plan?: ReopenPlan): PermPair {
    return rawChildPerm(c.role, writableAfter(this, plan), perm, shared);
  }

  /**
   * How far a write may reach: the window's end with size=, else anywhere —
   * raw passes a write past the end down, and the file grows, as a format
   * above it (qcow2 allocating) needs (QEMU's raw_adjust_offset).
   */
  private writeLimit(): number {
    return this.fixedSize === undefined ? Number.MAX_SAFE_INTEGER : this.size();
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
    checkRequest('write', offset, data.length, this.writeLimit());
    this.file.debugEvent('write_aio');
    return this.file.write(this.offset + offset, data, flags);
  }
  protected async doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    checkRequest('write zeroes', offset, length, this.writeLimit());
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
    // raw_get_info asks its file: a protocol without bdrv_get_info (nbd, null) leaves the dirty flag out.
    // raw_get_info is its file's bdrv_get_info: a cluster size from below (a qcow2 through a filter) shows here too.
    return {
      filename: f.filename,
      format: 'raw',
      virtualSize: this.size(),
      actualSize: f.actualSize,
      ...(f.clusterSize !== undefined ? { clusterSize: f.clusterSize } : {}),
      ...(f.dirtyFlag === null ? { dirtyFlag: null } : {}),
    };
  }
  protected async doClose(): Promise<void> {}
}

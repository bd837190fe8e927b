import { BlockError } from '../../image/errors.js';
import { type LuksOpenOptions, LuksImage } from '../../image/luks/image.js';
import { CRYPT_SECTOR } from '../../image/crypto/sector-cipher.js';
import type { Extent, Preallocation } from '../../image/types.js';
import { cryptoChildPerm, type NodeChild, type PermPair } from '../child.js';
import type { NamePolicy } from '../filename.js';
import { BlockNode, type NodeImageInfo, type WriteFlags, type ZeroFlags } from '../node.js';
import { NodeByteFile } from '../node-file.js';
import { type ReopenPlan, writableAfter } from '../permissions.js';

/** The key-secret is the luks driver's only strong option (block_crypto_strong_runtime_opts). */
const LUKS_NAMING: NamePolicy = { protocol: false, strong: ['key-secret'] };

/**
 * The `luks` format driver (block/crypto.c): a LuksImage whose bytes come
 * from the `file` child node. No sub-sector I/O (its request alignment is
 * the cipher's 512-byte sector: partial sectors are read, changed and
 * written whole); no block status, zero writes or discard of its own.
 */
export class LuksNode extends BlockNode {
  readonly driver = 'luks';

  private constructor(
    name: string,
    private readonly image: LuksImage,
    private file: BlockNode,
    private readonly byteFile: NodeByteFile,
    readOnly: boolean,
    fileLink: NodeChild,
  ) {
    super(name, readOnly, [fileLink]);
  }

  /** block_crypto_open_luks on the (already linked) file child; its open errors are the crypto layer's, as QEMU's. */
  static async open(name: string, fileLink: NodeChild, readOnly: boolean, opts: LuksOpenOptions): Promise<LuksNode> {
    const file = fileLink.node;
    // Whether it may write is the node's to say (BlockNode.checkWritable, which follows a reopen); an inactive file is never written.
    const byteFile = new NodeByteFile(file, (await file.imageInfo()).filename);
    const image = await LuksImage.openFile(byteFile, opts);
    return new LuksNode(name, image, file, byteFile, readOnly, fileLink);
  }

  override get namePolicy(): NamePolicy {
    return LUKS_NAMING;
  }

  override requestAlignment(): number {
    return CRYPT_SECTOR;
  }

  override childPerm(c: NodeChild, perm: number, shared: number, plan?: ReopenPlan): PermPair {
    return cryptoChildPerm(c.role, writableAfter(this, plan), perm, shared);
  }

  size(): number {
    return this.image.size();
  }
  protected doRead(offset: number, length: number): Promise<Uint8Array> {
    return this.image.read(offset, length);
  }
  protected override doReadInto(buf: Uint8Array, offset: number): Promise<void> {
    return this.image.readInto(buf, offset);
  }
  /** FUA is emulated with a flush by the generic write (BlockNode.supportsFua). */
  protected doWrite(offset: number, data: Uint8Array, _flags: WriteFlags): Promise<void> {
    return this.image.write(offset, data);
  }
  /** The block layer's fallback: zero buffers written (encrypted), which BDRV_REQ_NO_FALLBACK forbids. */
  protected async doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    if (flags.noFallback) throw new BlockError('UNSUPPORTED', 'Operation not supported', { errno: 'ENOTSUP' });
    await this.image.writeZeroes(offset, length);
  }
  protected doDiscard(offset: number, length: number): Promise<void> {
    return this.image.discard(offset, length);
  }
  protected doFlush(): Promise<void> {
    return this.image.flush();
  }
  blockStatus(offset: number, length: number): Promise<Extent> {
    return this.image.blockStatus(offset, length);
  }

  override async childReplaced(c: NodeChild, node: BlockNode): Promise<void> {
    if (c.name === 'file') {
      this.file = node;
      this.byteFile.retarget(node);
    }
  }

  /** block_crypto_co_truncate: the file takes the payload offset plus the new size. */
  protected override async doResize(newSize: number, prealloc: Preallocation): Promise<void> {
    await this.image.resize(newSize, { preallocation: prealloc });
  }

  /** block_crypto_get_info_luks takes its file's cluster size (a host file has none); the header's details are the format's own. */
  async imageInfo(): Promise<NodeImageInfo> {
    const f = await this.file.imageInfo();
    return { ...this.image.info(), filename: f.filename, actualSize: f.actualSize, ...(f.clusterSize !== undefined ? { clusterSize: f.clusterSize } : {}) };
  }

  protected async doClose(): Promise<void> {
    await this.image.close();
  }
}

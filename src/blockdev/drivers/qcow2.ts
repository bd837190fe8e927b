import { BlockError } from '../../image/errors.js';
import { openImage } from '../../image/open.js';
import { Qcow2Image } from '../../image/qcow2/image.js';
import type { Extent } from '../../image/types.js';
import { BlockNode, type ChildLink, type NodeImageInfo, type WriteFlags, type ZeroFlags } from '../node.js';
import { NodeByteFile } from '../node-file.js';
import { NodeImage } from '../node-image.js';

/**
 * The `qcow2` format driver: a Qcow2Image whose bytes come from the `file`
 * child node. The backing chain named in the header is opened by the image
 * layer (read-only, not as graph nodes) unless `backing` says otherwise:
 * null for none.
 */
export class Qcow2Node extends BlockNode {
  readonly driver = 'qcow2';

  private constructor(
    name: string,
    readonly image: Qcow2Image,
    private readonly file: BlockNode,
    readOnly: boolean,
    links: ChildLink[],
  ) {
    super(name, readOnly, links);
  }

  /**
   * `backing`: undefined opens the chain the header names (in the image
   * layer), null none, a node makes that node the backing image (a
   * snapshot overlay on an existing node).
   */
  static async open(name: string, file: BlockNode, readOnly: boolean, backing: BlockNode | null | undefined): Promise<Qcow2Node> {
    const filename = (await file.imageInfo()).filename;
    if (!readOnly && file.readOnly) throw new BlockError('READ_ONLY', `Block node is read-only`, { errno: 'EPERM' });
    let image: Qcow2Image;
    try {
      image = await Qcow2Image.openFile(new NodeByteFile(file, filename), {
        readOnly,
        openBacking: backing === undefined,
        ...(backing ? { backingImage: await NodeImage.of(backing) } : {}),
        openBackingImage: (p, fmt, depth) => openImage(p, { format: fmt, readOnly: true, depth }),
      });
    } catch (err) {
      // The image layer speaks like qemu-img ("Could not open 'f': …"); a node's open error is just the reason, as QEMU's.
      if (err instanceof BlockError && err.message.startsWith(`Could not open '${filename}': `)) {
        throw new BlockError(err.code, err.message.slice(`Could not open '${filename}': `.length), { errno: err.errno, cause: err });
      }
      throw err;
    }
    const links: ChildLink[] = [{ role: 'file', node: file }];
    if (backing) links.push({ role: 'backing', node: backing });
    return new Qcow2Node(name, image, file, readOnly, links);
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
  protected doWrite(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    return this.image.write(offset, data).then(() => (flags.fua ? this.image.flush() : undefined));
  }
  protected doWriteZeroes(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    return this.image.writeZeroes(offset, length, { mayUnmap: flags.mayUnmap ?? false });
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
  /** blockdev-snapshot: this overlay (opened without a backing image) reads through to `node` from now on; undefined undoes it. */
  async setBackingNode(node: BlockNode | undefined): Promise<void> {
    this.image.attachBacking(node ? await NodeImage.of(node) : undefined);
    this.setChild('backing', node);
  }

  /** Writes one whole cluster compressed (qemu-io's write -c, backup's compress). */
  writeCompressed(offset: number, data: Uint8Array): Promise<void> {
    this.checkWritable();
    return this.image.writeCompressed(offset, data);
  }
  info(): { clusterSize: number } {
    return { clusterSize: this.image.layout.clusterSize };
  }

  async imageInfo(): Promise<NodeImageInfo> {
    const i = this.image.info();
    const f = await this.file.imageInfo();
    const out: NodeImageInfo = { ...i, actualSize: f.actualSize };
    const backingNode = this.child('backing');
    if (backingNode) {
      out.backingImage = await backingNode.imageInfo();
      // An overlay given its backing node at run time (blockdev-snapshot) names it as QEMU then does.
      if (out.backingFilename === undefined) {
        out.backingFilename = out.fullBackingFilename = out.backingImage.filename;
        out.backingFormat = backingNode.driver === 'qcow2' ? 'qcow2' : 'raw';
      }
      return out;
    }
    let below = this.image.backing();
    let level: NodeImageInfo = out;
    while (below) {
      const bi = below.info();
      const next: NodeImageInfo = { ...bi, actualSize: await below.actualSize() };
      level.backingImage = next;
      level = next;
      below = below.backing();
    }
    return out;
  }

  protected doClose(): Promise<void> {
    return this.image.close();
  }
}

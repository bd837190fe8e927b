import { BlockError } from '../image/errors.js';
import { PERM_ALL } from '../image/perm.js';
import { BlockBackend } from './block-backend.js';
import type { BlockNode } from './node.js';
import { disableIoLimits } from './throttle/io-limits.js';

/**
 * The BlockBackends of a machine (QEMU's block_backends and
 * monitor_block_backends lists): named ones from -drive, anonymous ones a
 * device made for a node it was given. The storage daemon has none, so
 * there every lookup falls through to node names as before.
 */

/** What the device a BlockBackend is attached to tells the block layer (BlockDevOps and the qdev it is). */
export interface AttachedDevice {
  /** The QOM path of the device the BlockBackend is attached to (a virtio-blk-pci's is its virtio-backend child). */
  readonly path: string;
  /** The device's own id, when the attached device has one (query-block's `qdev` prefers it). */
  readonly id?: string;
  /** The id the user gave the device (-device id=), which qemu-io -d looks up. */
  readonly userId?: string;
  /** Whether the medium can change (a CD-ROM, a floppy): change_media_cb. */
  readonly removable: boolean;
  /** Whether it has a tray (is_tray_open). */
  readonly tray: boolean;
  /** Whether it reports I/O errors as io-status (blk_iostatus_enable). */
  readonly ioStatus: boolean;
}

/** The -drive legacy information (DriveInfo): the interface and its place on the bus. */
export interface DriveInfo {
  readonly type: string;
  readonly bus: number;
  readonly unit: number;
  readonly mediaCd: boolean;
}

export type ErrorAction = 'report' | 'ignore' | 'enospc' | 'stop' | 'auto';

export class MonitorBackend {
  readonly blk: BlockBackend;
  device: AttachedDevice | undefined;
  trayOpen = false;
  locked = false;
  ioStatus: 'ok' | 'failed' | 'nospace' = 'ok';
  /** blk_enable_write_cache: query-block's cache.writeback. */
  writeCache = true;
  onReadError: ErrorAction = 'report';
  onWriteError: ErrorAction = 'enospc';
  /** The root state an empty drive keeps for the medium inserted later (BlockBackendRootState). */
  rootState = { readOnly: false, detectZeroes: 'off' as 'off' | 'on' | 'unmap' };
  drive: DriveInfo | undefined;

  constructor(
    /** '' for a BlockBackend only a device knows (blk_name). */
    readonly name: string,
  ) {
    // A drive takes nothing and shares everything until a device says what it needs (blk_new(ctx, 0, BLK_PERM_ALL)).
    this.blk = new BlockBackend({ perm: 0, shared: PERM_ALL }, name === '' ? undefined : name);
  }

  get node(): BlockNode | undefined {
    return this.blk.node;
  }

  attach(device: AttachedDevice): void {
    this.device = device;
    // blk_get_attached_dev_id: the device's id when it has one, its QOM path otherwise.
    this.blk.devicePath = device.id ?? device.path;
  }

  /** blk_detach_dev: no device any more, and nothing asked of the node (blk_set_perm(0, BLK_PERM_ALL) as the device lets go). */
  async detach(): Promise<void> {
    this.device = undefined;
    this.blk.devicePath = undefined;
    await this.blk.setPerm({ perm: 0, shared: PERM_ALL }).catch(() => undefined);
  }
}

/** id_wellformed: a letter, then letters, digits, '-', '.', '_'. */
export function idWellFormed(id: string): boolean {
  return /^[A-Za-z][A-Za-z0-9._-]*$/.test(id);
}

export class MonitorBackends {
  /** Every BlockBackend in creation order (blk_all_next), which orders query-block. */
  private readonly all: MonitorBackend[] = [];

  /** Told when a device's tray opens or closes (the daemon sends DEVICE_TRAY_MOVED). */
  onTrayMoved: (b: MonitorBackend) => void = () => undefined;

  constructor(private readonly nodeExists: (name: string) => boolean) {}

  list(): readonly MonitorBackend[] {
    return this.all;
  }

  /** blk_by_name. */
  byName(name: string): MonitorBackend | undefined {
    return name === '' ? undefined : this.all.find((b) => b.name === name);
  }

  /** The BlockBackend of the node a device was given, looked up as blk_by_qdev_id does. */
  byDeviceId(id: string): MonitorBackend | undefined {
    return this.all.find((b) => b.device?.userId === id);
  }

  /**
   * blk_by_qdev_id: find_device_state (a user id under /machine/peripheral, or an absolute QOM path),
   * then the device's BlockBackend; 'no-backend' when the device is there but holds none.
   */
  byQdev(id: string): MonitorBackend | 'no-backend' | undefined {
    // A relative path goes from /machine/peripheral (find_device_state): "vda/virtio-backend".
    if (!id.startsWith('/') && id.includes('/')) id = `/machine/peripheral/${id}`;
    const peripheral = id.match(/^\/machine\/peripheral\/([^/]+)$/);
    if (id.startsWith('/') && !peripheral) {
      const b = this.all.find((x) => x.device?.path === id);
      if (b) return b;
      return this.all.some((x) => x.device?.path.startsWith(`${id}/`)) ? 'no-backend' : undefined;
    }
    const name = peripheral ? peripheral[1]! : id;
    const b = this.all.find((x) => x.device?.id === name);
    if (b) return b;
    return this.byDeviceId(name) ? 'no-backend' : undefined;
  }

  /** monitor_add_blk's checks, then the BlockBackend joins the list. */
  add(name: string): MonitorBackend {
    if (name !== '') {
      if (!idWellFormed(name)) throw new BlockError('INVALID_ARGUMENT', 'Invalid device name');
      if (this.byName(name)) throw new BlockError('INVALID_ARGUMENT', `Device with id '${name}' already exists`);
      if (this.nodeExists(name)) throw new BlockError('INVALID_ARGUMENT', `Device name '${name}' conflicts with an existing node name`);
    }
    const b = new MonitorBackend(name);
    this.all.push(b);
    return b;
  }

  /** The BlockBackend goes (blk_unref of the last reference); its root link first. */
  async remove(b: MonitorBackend): Promise<void> {
    const i = this.all.indexOf(b);
    if (i >= 0) this.all.splice(i, 1);
    // blk_delete: a throttled BlockBackend leaves its group.
    disableIoLimits(b.blk);
    await b.blk.remove();
  }

  /** bdrv_get_device_name: the name of the BlockBackend whose root the node is ('' if none), which names a job by default. */
  deviceName(node: BlockNode): string {
    return this.all.find((b) => b.name !== '' && b.node === node)?.name ?? '';
  }

  /** bdrv_get_device_or_node_name: the BlockBackend's name where the node is one's root, else the node's own (op blockers' "Node 'x' is busy"). */
  deviceOrNodeName(node: BlockNode): string {
    return this.deviceName(node) || node.nodeName;
  }

  /**
   * bdrv_lookup_bs(device, node_name): a BlockBackend's name gives its
   * root node ("has no medium" when it is empty), otherwise a node name.
   */
  rootOf(name: string): BlockNode | undefined {
    const b = this.byName(name);
    if (!b) return undefined;
    if (!b.node) throw new BlockError('INVALID_ARGUMENT', `Device '${name}' has no medium`);
    return b.node;
  }
}

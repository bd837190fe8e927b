import type { BlockGraph } from '../blockdev/graph.js';
import type { MonitorBackend } from '../blockdev/monitor-backends.js';
import { BlockError } from '../image/errors.js';
import { PERM_CONSISTENT_READ, PERM_RESIZE, PERM_WRITE, PERM_WRITE_UNCHANGED } from '../image/perm.js';

/**
 * The storage devices of the machine, as far as the block layer sees them:
 * each attaches to one BlockBackend (set_drive_helper: a -drive's by its
 * name, or a new anonymous one on a node named) and, when realized, takes
 * the permissions blkconf_apply_backend_options asks for. There is no
 * guest, so a device is only its QOM path and what it tells query-block.
 */
export type StorageDriver = 'virtio-blk-pci' | 'ide-hd' | 'ide-cd' | 'scsi-hd' | 'scsi-cd' | 'floppy' | 'cfi.pflash01';

interface Kind {
  /** The QOM type that holds the `drive` property (a virtio-blk-pci's is its virtio-blk-device). */
  propOwner: string;
  /** The QOM child the BlockBackend is attached to, below the device's own path. */
  backendChild?: string;
  /** No drive given: QEMU's message, or an empty BlockBackend of its own (CD-ROMs, floppies). */
  noDrive: string | 'empty';
  needsMedia: boolean;
  cd: boolean;
  resizable: boolean;
  removable: boolean;
  tray: boolean;
  ioStatus: boolean;
  bus: 'PCI' | 'IDE' | 'SCSI' | 'floppy-bus' | 'sysbus';
}

const KINDS: Record<StorageDriver, Kind> = {
  'virtio-blk-pci': { propOwner: 'virtio-blk-device', backendChild: 'virtio-backend', noDrive: 'drive property not set', needsMedia: true, cd: false, resizable: true, removable: false, tray: false, ioStatus: true, bus: 'PCI' },
  'ide-hd': { propOwner: 'ide-hd', noDrive: 'No drive specified', needsMedia: true, cd: false, resizable: true, removable: false, tray: false, ioStatus: true, bus: 'IDE' },
  'ide-cd': { propOwner: 'ide-cd', noDrive: 'empty', needsMedia: false, cd: true, resizable: false, removable: true, tray: true, ioStatus: true, bus: 'IDE' },
  'scsi-hd': { propOwner: 'scsi-hd', noDrive: 'drive property not set', needsMedia: true, cd: false, resizable: true, removable: false, tray: false, ioStatus: true, bus: 'SCSI' },
  'scsi-cd': { propOwner: 'scsi-cd', noDrive: 'empty', needsMedia: false, cd: true, resizable: false, removable: true, tray: true, ioStatus: true, bus: 'SCSI' },
  floppy: { propOwner: 'floppy', noDrive: 'empty', needsMedia: false, cd: false, resizable: false, removable: true, tray: false, ioStatus: false, bus: 'floppy-bus' },
  // The pc board's flash (-drive if=pflash): not a device -device can make.
  'cfi.pflash01': { propOwner: 'cfi.pflash01', noDrive: 'empty', needsMedia: false, cd: false, resizable: false, removable: false, tray: false, ioStatus: false, bus: 'sysbus' },
};

/** The device names QEMU takes for these (aliases resolved). */
export function storageDriver(name: string): StorageDriver | undefined {
  if (name === 'virtio-blk') return 'virtio-blk-pci';
  return name in KINDS && KINDS[name as StorageDriver].bus !== 'sysbus' ? (name as StorageDriver) : undefined;
}

export function busOf(driver: StorageDriver): Kind['bus'] {
  return KINDS[driver].bus;
}

/** A storage device as the command line (or a -drive's interface) asks for it. */
export interface DevicePlan {
  driver: StorageDriver;
  /** -device id=, which query-block shows as `qdev` when it names the attached device itself. */
  id?: string;
  /** /machine/peripheral/ID, /machine/peripheral-anon/device[N], or the board's /machine/unattached/device[N]. */
  path: string;
  drive?: string;
  shareRw: boolean;
  writeCache?: boolean;
  /** Refused before anything (no bus of its kind): the message. */
  noBus?: string;
}

/**
 * Creates and realizes one device: its BlockBackend found or made,
 * attached, checked and given its permissions, in QEMU's order and words.
 * A BlockBackend it made for a node goes again if it fails.
 */
export async function realizeDevice(graph: BlockGraph, plan: DevicePlan): Promise<MonitorBackend> {
  if (plan.noBus !== undefined) throw new BlockError('INVALID_ARGUMENT', plan.noBus);
  const kind = KINDS[plan.driver];
  const backends = graph.backends;
  let b: MonitorBackend | undefined;
  let made = false;
  try {
    if (plan.drive !== undefined && plan.drive !== '') {
      b = backends.byName(plan.drive);
      if (!b) {
        const node = graph.get(plan.drive);
        if (node) {
          b = backends.add('');
          made = true;
          await b.blk.insert(node);
        }
      }
      if (!b) throw new BlockError('INVALID_ARGUMENT', `Property '${kind.propOwner}.drive' can't find value '${plan.drive}'`);
      if (b.device) {
        if (b.drive && b.drive.type !== 'none') {
          throw new BlockError(
            'INVALID_ARGUMENT',
            `Drive '${plan.drive}' is already in use because it has been automatically connected to another device (did you need 'if=none' in the drive options?)`,
          );
        }
        throw new BlockError('INVALID_ARGUMENT', `Drive '${plan.drive}' is already in use by another device`);
      }
    } else if (kind.noDrive === 'empty') {
      b = backends.add('');
      made = true;
    } else {
      throw new BlockError('INVALID_ARGUMENT', kind.noDrive);
    }
    const path = kind.backendChild ? `${plan.path}/${kind.backendChild}` : plan.path;
    b.attach({
      path,
      ...(!kind.backendChild && plan.id !== undefined ? { id: plan.id } : {}),
      ...(plan.id !== undefined ? { userId: plan.id } : {}),
      removable: kind.removable,
      tray: kind.tray,
      ioStatus: kind.ioStatus,
    });
    // blk_attach_dev during an incoming migration: the device's permissions wait for the images to be activated.
    if (graph.openInactive) b.blk.disablePerms();
    const node = b.node;
    if (kind.needsMedia && !node) throw new BlockError('INVALID_ARGUMENT', 'Device needs media, but drive is empty');
    // An empty drive takes no write, so a read-only medium can go in later (floppy_drive_realize).
    const writable = node ? !node.readOnly : false;
    // ide-hd asks for write whatever the node is: the permission check refuses a read-only one first.
    const readOnly = kind.cd || (!writable && plan.driver !== 'ide-hd');
    await b.blk.setPerm({
      perm: PERM_CONSISTENT_READ | (readOnly ? 0 : PERM_WRITE),
      shared: PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED | (kind.resizable ? PERM_RESIZE : 0) | (plan.shareRw ? PERM_WRITE : 0),
    });
    if (plan.writeCache !== undefined) b.writeCache = plan.writeCache;
    return b;
  } catch (err) {
    if (b && made) await backends.remove(b);
    else if (b?.device?.path.startsWith(plan.path)) b.device = undefined;
    throw err;
  }
}

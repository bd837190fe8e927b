import type { BlockGraph } from '../blockdev/graph.js';
import type { MonitorBackend } from '../blockdev/monitor-backends.js';
import type { BlockNode } from '../blockdev/node.js';
import type { DevicePlan } from './storage-devices.js';

/**
 * The machine's devices as qdev knows them, as far as blockemu models
 * them: where each sits in the QOM tree, the bus it is on and the bus it
 * gives, and a storage device's BlockBackend. There is no guest, so a
 * device is only what device_add, device_del and query-block see.
 */

/** A device to create: the command line's -device (or a -drive's), or device_add's. */
export interface DeviceSpec {
  /** The model, its alias resolved. */
  readonly model: string;
  readonly id?: string;
  /** /machine/peripheral/ID, /machine/peripheral-anon/device[N], or the board's /machine/unattached/device[N]. */
  readonly path: string;
  /** The bus it sits on, by name (pci.0, scsi0.0, ide.1…). */
  readonly bus?: string;
  /** The bus it gives its devices: a SCSI adapter's (a virtio-scsi's scsi0.0), a PCIe port's (named by its id). */
  readonly childBus?: string;
  readonly childBusKind?: 'SCSI' | 'PCIE';
  /** The iothread the devices on its bus run in (virtio-scsi iothread=). */
  readonly iothread?: string;
  /** What a storage model needs realized. */
  readonly storage?: DevicePlan;
}

export interface Device extends DeviceSpec {
  /** The storage device's BlockBackend, which goes with it. */
  backend?: MonitorBackend;
  /** device_del asked the guest, which has not answered (a PCI device waits for ACPI's eject). */
  unplugRequested: boolean;
  /** …at virtual time 0, so the request never expires. */
  unplugRequestedAt0?: boolean;
}

/** The buses that take a device while the machine runs: PCI on pc's i440FX, and SCSI. */
export function busHotpluggable(bus: string, machine: string): boolean {
  if (bus === 'pci.0') return machine.startsWith('pc-i440fx');
  return !bus.startsWith('ide.') && !bus.startsWith('floppy-bus') && bus !== 'pcie.0';
}

/** Virtio transports (virtio-blk-pci…) have a virtio-backend child, which goes (and is announced) first. */
export function hasVirtioBackend(model: string): boolean {
  return model.startsWith('virtio-') && model.includes('-pci');
}

export class DeviceTree {
  private readonly devices: Device[] = [];
  /** The next /machine/peripheral-anon/device[N]: every device without an id takes one, realized or not. */
  private anon = 0;

  /** The block graph, where an unplugged device's BlockBackend and the nodes only it used go from (set once it exists). */
  graph: BlockGraph | undefined;
  /** Told of every device that is gone, its virtio-backend first (the daemon sends DEVICE_DELETED). */
  onDeleted: (id: string | undefined, path: string) => void = () => undefined;
  /** Told when a -drive's BlockBackend goes with its device, with its root node (the daemon cancels the jobs on it). */
  onAutoDelete: (node: BlockNode) => Promise<void> = async () => undefined;
  /** Told of a storage device's node as the device goes (its unrealize drains the BlockBackend: the jobs there pause and resume). */
  onDrain: (node: BlockNode) => void = () => undefined;
  /** Unplugs finishing after the reply, one after another, so their events keep their order. */
  private finishing: Promise<void> = Promise.resolve();

  constructor(readonly machine: string) {}

  list(): readonly Device[] {
    return this.devices;
  }

  /** find_device_state: an id under /machine/peripheral, or a QOM path. */
  find(idOrPath: string): Device | undefined {
    const path = idOrPath.startsWith('/') ? idOrPath : `/machine/peripheral/${idOrPath}`;
    return this.devices.find((d) => d.path === path);
  }

  byId(id: string): Device | undefined {
    return this.devices.find((d) => d.id === id);
  }

  /** A bus by name (qbus_find's last step): the host adapter that gives it. */
  busOwner(name: string): Device | undefined {
    return this.devices.find((d) => d.childBus === name);
  }

  /** The first bus of a kind a device may go on, as qbus_find_recursive finds it ('SCSI' only: the host adapters'). */
  firstScsiBus(): Device | undefined {
    return this.devices.find((d) => d.childBus !== undefined && d.childBusKind === 'SCSI');
  }

  /** The devices on a bus, in creation order. */
  onBus(name: string): Device[] {
    return this.devices.filter((d) => d.bus === name);
  }

  /** qdev_set_id for a device without an id: the next anonymous path. */
  anonPath(): string {
    return `/machine/peripheral-anon/device[${this.anon++}]`;
  }

  add(spec: DeviceSpec, backend?: MonitorBackend): Device {
    const m = /^\/machine\/peripheral-anon\/device\[(\d+)\]$/.exec(spec.path);
    // The command line's devices took their numbers when it was read.
    if (m) this.anon = Math.max(this.anon, Number(m[1]) + 1);
    const d: Device = { ...spec, unplugRequested: false, ...(backend ? { backend } : {}) };
    this.devices.push(d);
    return d;
  }

  remove(d: Device): void {
    const i = this.devices.indexOf(d);
    if (i >= 0) this.devices.splice(i, 1);
  }

  /**
   * Takes a device (and whatever sits on its bus, first) out of the tree
   * now, so its id is free; its BlockBackend goes and the events follow
   * once the command's reply is out, as QEMU's come after device_del's.
   */
  unplug(d: Device): void {
    const gone: Device[] = [];
    const take = (dev: Device) => {
      // A bus keeps its newest child first (bus_add_child), and unplugs them in that order.
      if (dev.childBus !== undefined) for (const child of this.onBus(dev.childBus).reverse()) take(child);
      this.remove(dev);
      const node = dev.backend?.node;
      if (node) this.onDrain(node);
      gone.push(dev);
    };
    take(d);
    const finish = async () => {
      for (const dev of gone) {
        const b = dev.backend;
        // blockdev_auto_del: a -drive's BlockBackend goes with its device, as does one made for a node.
        if (b && this.graph) {
          try {
            // blockdev_mark_auto_del: a -drive's jobs on its medium are cancelled as the drive goes.
            if (b.node && b.drive) await this.onAutoDelete(b.node);
            const node = b.node;
            await b.detach();
            await this.graph.backends.remove(b);
            // bdrv_unref: a node nobody else holds (an overlay blockdev-snapshot-sync made, a -drive's image) goes too.
            if (node) await this.graph.release(node);
          } catch {
            // A node that fails to close stays behind (QEMU's bdrv_close ignores such errors too); the device is gone all the same.
          }
        }
        if (hasVirtioBackend(dev.model)) this.onDeleted(undefined, `${dev.path}/virtio-backend`);
        this.onDeleted(dev.id, dev.path);
      }
    };
    this.finishing = this.finishing.then(() => new Promise<void>((r) => setImmediate(() => void finish().finally(r))));
  }

  /** A reset ejects the PCI devices whose unplug the (absent) guest never acknowledged. */
  reset(): void {
    for (const d of [...this.devices]) if (d.unplugRequested && this.devices.includes(d)) this.unplug(d);
  }
}

/**
 * device_add and device_del as qdev-monitor.c carries them out on a
 * running machine, in its order and words: the id, the model, the bus
 * (found, of the right kind, taking hot-plugged devices), the id's place in
 * the QOM tree, the properties, then realize. Unplugging follows the bus:
 * SCSI devices go at once; a PCI device waits for a guest that is not
 * there, until a reset ejects it.
 */
import type { BlockGraph } from '../blockdev/graph.js';
import { idWellFormed } from '../blockdev/monitor-backends.js';
import { BlockError } from '../image/errors.js';
import { deviceModel } from './device-models.js';
import { busHotpluggable, type Device, type DeviceSpec, type DeviceTree } from './devices.js';
import { type DevicePlan, realizeDevice, storageDriver } from './storage-devices.js';

/** Devices that give the machine a SCSI bus for scsi-hd and scsi-cd. */
const SCSI_HBAS = new Set(['virtio-scsi-pci', 'lsi53c895a', 'megasas', 'megasas-gen2', 'am53c974', 'dc390', 'mptsas1068', 'pvscsi']);
/** PCI Express ports: each gives a bus named by its id, which takes hot-plugged PCI devices (q35's root bus does not). */
const PCIE_PORTS = new Set(['pcie-root-port', 'ioh3420', 'xio3130-downstream']);

/** The bus a device gives (qbus_init's name: the device's id and the bus's number, or the bus type's name when it has no id). */
export function childBusOf(model: string, id: string | undefined): Pick<DeviceSpec, 'childBus' | 'childBusKind'> {
  if (SCSI_HBAS.has(model)) return { childBus: `${id ?? 'scsi'}.0`, childBusKind: 'SCSI' };
  if (PCIE_PORTS.has(model) && id !== undefined) return { childBus: id, childBusKind: 'PCIE' };
  return {};
}

const fail = (message: string) => new BlockError('INVALID_ARGUMENT', message);

/** The machine's own buses of a kind (the board's), first to take a device; undefined when it has none. */
export function boardBus(machine: string, kind: string): string | undefined {
  const pc = machine.startsWith('pc-i440fx');
  const q35 = machine.startsWith('pc-q35');
  if (!pc && !q35) return undefined;
  switch (kind) {
    case 'PCI':
      return pc ? 'pci.0' : 'pcie.0';
    // qbus_find_recursive ends on the last IDE bus with room.
    case 'IDE':
      return pc ? 'ide.1' : 'ide.5';
    case 'floppy-bus':
      return pc ? 'floppy-bus.0' : undefined;
    case 'ISA':
      return 'isa.0';
    default:
      return undefined;
  }
}

/** qbus_find for bus=NAME: a board bus or a host adapter's, and its kind. */
function findBus(tree: DeviceTree, name: string): string | undefined {
  const owner = tree.busOwner(name);
  if (owner) return owner.childBusKind;
  for (const kind of ['PCI', 'ISA', 'floppy-bus']) if (boardBus(tree.machine, kind) === name) return name === 'pcie.0' ? 'PCIE' : kind;
  const ide = /^ide\.(\d+)$/.exec(name);
  if (ide && boardBus(tree.machine, 'IDE') !== undefined && Number(ide[1]) <= (tree.machine.startsWith('pc-q35') ? 5 : 1)) return 'IDE';
  return undefined;
}

const ON = new Set(['on', 'yes', 'true', 'y']);
const OFF = new Set(['off', 'no', 'false', 'n']);

function flag(o: Map<string, string>, key: string): boolean | undefined {
  const v = o.get(key);
  if (v === undefined) return undefined;
  if (ON.has(v)) return true;
  if (OFF.has(v)) return false;
  throw fail(`Parameter '${key}' expects 'on' or 'off'`);
}

/**
 * Realizes a device and enters it in the tree. A device on a bus with an
 * iothread moves its node there: a node another device uses in another
 * context cannot follow (virtio_scsi_hotplug's blk_set_aio_context).
 */
export async function plugDevice(tree: DeviceTree, graph: BlockGraph, spec: DeviceSpec): Promise<Device> {
  const backend = spec.storage ? await realizeDevice(graph, spec.storage) : undefined;
  if (backend?.node) {
    const context = (d: DeviceSpec) => (d.bus === undefined ? undefined : tree.busOwner(d.bus)?.iothread);
    const mine = context(spec);
    if (tree.list().some((d) => d.backend !== undefined && d.backend.node === backend.node && context(d) !== mine)) {
      await backend.detach();
      if (!backend.drive) await graph.backends.remove(backend);
      throw fail('Cannot change iothread of active block backend');
    }
  }
  return tree.add(spec, backend);
}

/**
 * qdev_device_add from device_add's options (the QemuOpts its arguments
 * became, `id` among them); `isIothread` tells whether an object of that id
 * is an iothread, for an `iothread` link property.
 */
export async function addDevice(tree: DeviceTree, graph: BlockGraph, o: Map<string, string>, isIothread: (id: string) => boolean): Promise<void> {
  const id = o.get('id');
  if (id !== undefined && !idWellFormed(id)) throw fail("Parameter 'id' expects an identifier");
  const name = o.get('driver');
  if (name === undefined) throw fail("Parameter 'driver' is missing");
  const model = deviceModel(name);
  if (!model) throw fail(`'${name}' is not a valid device model name`);
  let bus = o.get('bus');
  if (bus !== undefined) {
    const kind = findBus(tree, bus);
    if (kind === undefined) throw fail(`Bus '${bus}' not found`);
    // A PCIe bus takes PCI devices.
    if (kind !== model.bus && !(kind === 'PCIE' && model.bus === 'PCI')) throw fail(`Device '${model.name}' can't go on ${kind} bus`);
  } else if (model.bus !== '') {
    bus = model.bus === 'SCSI' ? tree.firstScsiBus()?.childBus : boardBus(tree.machine, model.bus);
    if (bus === undefined) throw fail(`No '${model.bus}' bus found for device '${model.name}'`);
  } else {
    throw new BlockError('UNSUPPORTED', `blockemu system does not hot-plug '${model.name}' devices`);
  }
  if (!busHotpluggable(bus, tree.machine)) throw fail(`Bus '${bus}' does not support hotplugging`);
  if (model.bus !== 'PCI' && model.bus !== 'SCSI') throw new BlockError('UNSUPPORTED', `blockemu system does not hot-plug '${model.name}' devices`);
  if (id !== undefined && tree.byId(id)) throw fail(`Duplicate device ID '${id}'`);
  const path = id !== undefined ? `/machine/peripheral/${id}` : tree.anonPath();
  const iothread = o.get('iothread');
  // The link property's setter, among the properties (after the id took its place).
  if (iothread !== undefined && !isIothread(iothread)) throw new BlockError('NOT_FOUND', `Device '${iothread}' not found`, { qmpClass: 'DeviceNotFound' });
  const driver = storageDriver(model.name);
  let storage: DevicePlan | undefined;
  if (driver) {
    const writeCache = o.get('write-cache') === 'auto' ? undefined : flag(o, 'write-cache');
    storage = {
      driver,
      path,
      shareRw: flag(o, 'share-rw') ?? false,
      ...(id !== undefined ? { id } : {}),
      ...(o.has('drive') ? { drive: o.get('drive')! } : {}),
      ...(writeCache !== undefined ? { writeCache } : {}),
    };
  }
  await plugDevice(tree, graph, {
    model: model.name,
    path,
    bus,
    ...(id !== undefined ? { id } : {}),
    ...childBusOf(model.name, id),
    ...(iothread !== undefined ? { iothread } : {}),
    ...(storage ? { storage } : {}),
  });
}

/**
 * qmp_device_del: a device on a SCSI bus goes at once; one on PCI waits
 * for the guest's eject. Asking again is refused while the request has not
 * expired: it expires at the virtual time it was made, which is never while
 * that time is still 0 (a machine that has not run yet).
 */
export function deleteDevice(tree: DeviceTree, idOrPath: string, clockStarted: boolean): void {
  const d = tree.find(idOrPath);
  if (!d) throw new BlockError('NOT_FOUND', `Device '${idOrPath}' not found`, { qmpClass: 'DeviceNotFound' });
  if (d.unplugRequested && d.unplugRequestedAt0) throw fail(`Device ${idOrPath} is already in the process of unplug`);
  if (d.bus !== undefined && !busHotpluggable(d.bus, tree.machine)) throw fail(`Bus '${d.bus}' does not support hotplugging`);
  if (d.bus === 'pci.0' || (d.bus !== undefined && tree.busOwner(d.bus)?.childBusKind === 'PCIE')) {
    d.unplugRequested = true;
    d.unplugRequestedAt0 = !clockStarted;
  } else {
    tree.unplug(d);
  }
}

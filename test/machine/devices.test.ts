import { describe, expect, it } from 'vitest';
import { busHotpluggable, DeviceTree, hasVirtioBackend } from '../../src/machine/devices.js';

/** The device tree on its own (no block layer): places, lookups, and the order devices go in. */
describe('DeviceTree', () => {
  const pc = 'pc-i440fx-7.2';
  const deleted = (tree: DeviceTree) => {
    const out: string[] = [];
    tree.onDeleted = (id, path) => out.push(id === undefined ? path : `${id} ${path}`);
    return out;
  };
  const settle = () => new Promise<void>((r) => setTimeout(r, 20));

  it('numbers anonymous devices after the command line’s, and finds a device by id or QOM path', () => {
    const tree = new DeviceTree(pc);
    tree.add({ model: 'virtio-scsi-pci', path: '/machine/peripheral-anon/device[2]', bus: 'pci.0', childBus: 'scsi.0', childBusKind: 'SCSI' });
    tree.add({ model: 'scsi-hd', id: 'hd', path: '/machine/peripheral/hd', bus: 'scsi.0' });
    expect(tree.anonPath()).toBe('/machine/peripheral-anon/device[3]');
    expect(tree.anonPath()).toBe('/machine/peripheral-anon/device[4]');
    expect(tree.find('hd')?.model).toBe('scsi-hd');
    expect(tree.find('/machine/peripheral/hd')?.id).toBe('hd');
    expect(tree.find('/machine/peripheral-anon/device[2]')?.model).toBe('virtio-scsi-pci');
    expect(tree.find('device[2]')).toBeUndefined();
    expect(tree.firstScsiBus()?.childBus).toBe('scsi.0');
  });

  it('unplugs an adapter’s devices first, newest first, and announces each only after the caller has returned', async () => {
    const tree = new DeviceTree(pc);
    const events = deleted(tree);
    tree.add({ model: 'virtio-scsi-pci', id: 's', path: '/machine/peripheral/s', bus: 'pci.0', childBus: 's.0', childBusKind: 'SCSI' });
    tree.add({ model: 'scsi-hd', id: 'a', path: '/machine/peripheral/a', bus: 's.0' });
    tree.add({ model: 'scsi-cd', path: '/machine/peripheral-anon/device[0]', bus: 's.0' });
    tree.unplug(tree.find('s')!);
    // Gone from the tree at once (the ids are free), announced later.
    expect(tree.list()).toEqual([]);
    expect(events).toEqual([]);
    await settle();
    expect(events).toEqual(['/machine/peripheral-anon/device[0]', 'a /machine/peripheral/a', '/machine/peripheral/s/virtio-backend', 's /machine/peripheral/s']);
  });

  it('ejects at reset only the PCI devices whose unplug was asked for', async () => {
    const tree = new DeviceTree(pc);
    const events = deleted(tree);
    tree.add({ model: 'virtio-blk-pci', id: 'v', path: '/machine/peripheral/v', bus: 'pci.0' });
    tree.add({ model: 'e1000', id: 'n', path: '/machine/peripheral/n', bus: 'pci.0' }).unplugRequested = true;
    tree.reset();
    await settle();
    expect(events).toEqual(['n /machine/peripheral/n']);
    expect(tree.list().map((d) => d.id)).toEqual(['v']);
  });

  it('knows which buses take hot-plugged devices and which models have a virtio-backend', () => {
    expect(busHotpluggable('pci.0', pc)).toBe(true);
    expect(busHotpluggable('pci.0', 'pc-q35-7.2')).toBe(false);
    expect(busHotpluggable('pcie.0', 'pc-q35-7.2')).toBe(false);
    expect(busHotpluggable('scsi0.0', pc)).toBe(true);
    expect(busHotpluggable('ide.1', pc)).toBe(false);
    expect(busHotpluggable('floppy-bus.0', pc)).toBe(false);
    expect(hasVirtioBackend('virtio-blk-pci')).toBe(true);
    expect(hasVirtioBackend('virtio-scsi-pci-non-transitional')).toBe(true);
    expect(hasVirtioBackend('scsi-hd')).toBe(false);
  });
});

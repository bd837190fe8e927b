/**
 * What qemu-system-x86_64 7.2 prints for the probes a harness runs before
 * it starts a VM (QEMU's iotests: testenv.py reads `-machine help` for the
 * default machine, common.rc's _require_devices reads `-M none -device
 * help`). Machines are QEMU's list, so a harness picks the same default;
 * devices are only the storage ones, the devices blockemu system accepts.
 */

/** `-machine help`: name and description, as QEMU lists them (pc, an alias, first). */
export const MACHINES: ReadonlyArray<readonly [string, string]> = [
  ['microvm', 'microvm (i386)'],
  ['pc', 'Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)'],
  ['pc-i440fx-7.2', 'Standard PC (i440FX + PIIX, 1996) (default)'],
  ['pc-i440fx-7.1', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-7.0', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-6.2', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-6.1', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-6.0', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-5.2', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-5.1', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-5.0', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-4.2', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-4.1', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-4.0', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-3.1', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-3.0', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-2.9', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-2.8', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-2.7', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-2.6', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-2.5', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-2.4', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-2.3', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-2.2', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-2.12', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-2.11', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-2.10', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-2.1', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-2.0', 'Standard PC (i440FX + PIIX, 1996)'],
  ['pc-i440fx-1.7', 'Standard PC (i440FX + PIIX, 1996) (deprecated)'],
  ['pc-i440fx-1.6', 'Standard PC (i440FX + PIIX, 1996) (deprecated)'],
  ['pc-i440fx-1.5', 'Standard PC (i440FX + PIIX, 1996) (deprecated)'],
  ['pc-i440fx-1.4', 'Standard PC (i440FX + PIIX, 1996) (deprecated)'],
  ['q35', 'Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)'],
  ['pc-q35-7.2', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-7.1', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-7.0', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-6.2', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-6.1', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-6.0', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-5.2', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-5.1', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-5.0', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-4.2', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-4.1', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-4.0.1', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-4.0', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-3.1', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-3.0', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-2.9', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-2.8', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-2.7', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-2.6', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-2.5', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-2.4', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-2.12', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-2.11', 'Standard PC (Q35 + ICH9, 2009)'],
  ['pc-q35-2.10', 'Standard PC (Q35 + ICH9, 2009)'],
  ['isapc', 'ISA-only PC'],
  ['none', 'empty machine'],
  ['x-remote', 'Experimental remote machine'],
];

/** `-device help`'s "Storage devices" section, line for line. */
export const STORAGE_DEVICES: readonly string[] = [
  'name "am53c974", bus PCI, desc "AMD Am53c974 PCscsi-PCI SCSI adapter"',
  'name "cxl-type3", bus PCI, desc "CXL PMEM Device (Type 3)"',
  'name "dc390", bus PCI, desc "Tekram DC-390 SCSI adapter"',
  'name "floppy", bus floppy-bus, desc "virtual floppy drive"',
  'name "ich9-ahci", bus PCI, alias "ahci"',
  'name "ide-cd", bus IDE, desc "virtual IDE CD-ROM"',
  'name "ide-hd", bus IDE, desc "virtual IDE disk"',
  'name "isa-fdc", bus ISA, desc "virtual floppy controller"',
  'name "isa-ide", bus ISA',
  'name "lsi53c810", bus PCI',
  'name "lsi53c895a", bus PCI, alias "lsi"',
  'name "megasas", bus PCI, desc "LSI MegaRAID SAS 1078"',
  'name "megasas-gen2", bus PCI, desc "LSI MegaRAID SAS 2108"',
  'name "mptsas1068", bus PCI, desc "LSI SAS 1068"',
  'name "nvdimm", desc "DIMM memory module"',
  'name "nvme", bus PCI, desc "Non-Volatile Memory Express"',
  'name "nvme-ns", bus nvme-bus, desc "Virtual NVMe namespace"',
  'name "nvme-subsys", desc "Virtual NVMe subsystem"',
  'name "piix3-ide", bus PCI',
  'name "piix4-ide", bus PCI',
  'name "pvscsi", bus PCI',
  'name "scsi-block", bus SCSI, desc "SCSI block device passthrough"',
  'name "scsi-cd", bus SCSI, desc "virtual SCSI CD-ROM"',
  'name "scsi-generic", bus SCSI, desc "pass through generic scsi device (/dev/sg*)"',
  'name "scsi-hd", bus SCSI, desc "virtual SCSI disk"',
  'name "sd-card", bus sd-bus',
  'name "sdhci-pci", bus PCI',
  'name "usb-bot", bus usb-bus',
  'name "usb-mtp", bus usb-bus, desc "USB Media Transfer Protocol device"',
  'name "usb-storage", bus usb-bus',
  'name "usb-uas", bus usb-bus',
  'name "vhost-scsi", bus virtio-bus',
  'name "vhost-scsi-pci", bus PCI',
  'name "vhost-scsi-pci-non-transitional", bus PCI',
  'name "vhost-scsi-pci-transitional", bus PCI',
  'name "vhost-user-blk", bus virtio-bus',
  'name "vhost-user-blk-pci", bus PCI',
  'name "vhost-user-blk-pci-non-transitional", bus PCI',
  'name "vhost-user-blk-pci-transitional", bus PCI',
  'name "vhost-user-fs-device", bus virtio-bus',
  'name "vhost-user-fs-pci", bus PCI',
  'name "vhost-user-scsi", bus virtio-bus',
  'name "vhost-user-scsi-pci", bus PCI',
  'name "vhost-user-scsi-pci-non-transitional", bus PCI',
  'name "vhost-user-scsi-pci-transitional", bus PCI',
  'name "virtio-9p-device", bus virtio-bus',
  'name "virtio-9p-pci", bus PCI, alias "virtio-9p"',
  'name "virtio-9p-pci-non-transitional", bus PCI',
  'name "virtio-9p-pci-transitional", bus PCI',
  'name "virtio-blk-device", bus virtio-bus',
  'name "virtio-blk-pci", bus PCI, alias "virtio-blk"',
  'name "virtio-blk-pci-non-transitional", bus PCI',
  'name "virtio-blk-pci-transitional", bus PCI',
  'name "virtio-pmem", bus virtio-bus',
  'name "virtio-scsi-device", bus virtio-bus',
  'name "virtio-scsi-pci", bus PCI, alias "virtio-scsi"',
  'name "virtio-scsi-pci-non-transitional", bus PCI',
  'name "virtio-scsi-pci-transitional", bus PCI',
];

export function machineHelp(): string {
  return `Supported machines are:\n${MACHINES.map(([n, d]) => `${n.padEnd(20)} ${d}\n`).join('')}`;
}

/** The machine a -machine type names, aliases resolved (pc → pc-i440fx-7.2); undefined for one QEMU does not have. */
export function resolveMachine(type: string): string | undefined {
  const entry = MACHINES.find(([n]) => n === type);
  if (!entry) return undefined;
  const alias = /\(alias of ([^)]+)\)/.exec(entry[1]);
  return alias ? alias[1] : type;
}

export function deviceHelp(): string {
  return `Storage devices:\n${STORAGE_DEVICES.map((l) => `${l}\n`).join('')}`;
}

/** `-drive format=help`: the drivers blockemu implements, in QEMU's layout (sorted, the read-only line the same list). */
export function formatHelp(drivers: readonly string[]): string {
  const list = [...drivers].sort().join(' ');
  return `Supported formats: ${list}\nSupported formats (read-only): ${list}\n`;
}

/**
 * The device models qemu-system-x86_64 7.2 (Debian) lets a user create
 * (`-device help`): each name with the bus it plugs into ('' for none) and
 * its alias. device_add checks a driver against these before anything;
 * blockemu models the storage ones and takes the PCI ones as devices with
 * nothing behind them (a SCSI host adapter gives its bus).
 */
export interface DeviceModel {
  readonly name: string;
  readonly bus: string;
}

// name:bus[:alias], space-separated (generated from `qemu-system-x86_64 -device help`).
const MODELS = `
486-v1-x86_64-cpu: 486-x86_64-cpu: AC97:PCI:ac97 AMDVI-PCI:PCI Broadwell-IBRS-x86_64-cpu: Broadwell-noTSX-IBRS-x86_64-cpu:
Broadwell-noTSX-x86_64-cpu: Broadwell-v1-x86_64-cpu: Broadwell-v2-x86_64-cpu: Broadwell-v3-x86_64-cpu: Broadwell-v4-x86_64-cpu:
Broadwell-x86_64-cpu: Cascadelake-Server-noTSX-x86_64-cpu: Cascadelake-Server-v1-x86_64-cpu: Cascadelake-Server-v2-x86_64-cpu:
Cascadelake-Server-v3-x86_64-cpu: Cascadelake-Server-v4-x86_64-cpu: Cascadelake-Server-v5-x86_64-cpu: Cascadelake-Server-x86_64-cpu:
Conroe-v1-x86_64-cpu: Conroe-x86_64-cpu: Cooperlake-v1-x86_64-cpu: Cooperlake-v2-x86_64-cpu: Cooperlake-x86_64-cpu: Denverton-v1-x86_64-cpu:
Denverton-v2-x86_64-cpu: Denverton-v3-x86_64-cpu: Denverton-x86_64-cpu: Dhyana-v1-x86_64-cpu: Dhyana-v2-x86_64-cpu: Dhyana-x86_64-cpu:
EPYC-IBPB-x86_64-cpu: EPYC-Milan-v1-x86_64-cpu: EPYC-Milan-x86_64-cpu: EPYC-Rome-v1-x86_64-cpu: EPYC-Rome-v2-x86_64-cpu:
EPYC-Rome-x86_64-cpu: EPYC-v1-x86_64-cpu: EPYC-v2-x86_64-cpu: EPYC-v3-x86_64-cpu: EPYC-x86_64-cpu: ES1370:PCI:es1370
Haswell-IBRS-x86_64-cpu: Haswell-noTSX-IBRS-x86_64-cpu: Haswell-noTSX-x86_64-cpu: Haswell-v1-x86_64-cpu: Haswell-v2-x86_64-cpu:
Haswell-v3-x86_64-cpu: Haswell-v4-x86_64-cpu: Haswell-x86_64-cpu: Icelake-Server-noTSX-x86_64-cpu: Icelake-Server-v1-x86_64-cpu:
Icelake-Server-v2-x86_64-cpu: Icelake-Server-v3-x86_64-cpu: Icelake-Server-v4-x86_64-cpu: Icelake-Server-v5-x86_64-cpu:
Icelake-Server-v6-x86_64-cpu: Icelake-Server-x86_64-cpu: IvyBridge-IBRS-x86_64-cpu: IvyBridge-v1-x86_64-cpu: IvyBridge-v2-x86_64-cpu:
IvyBridge-x86_64-cpu: KnightsMill-v1-x86_64-cpu: KnightsMill-x86_64-cpu: Nehalem-IBRS-x86_64-cpu: Nehalem-v1-x86_64-cpu:
Nehalem-v2-x86_64-cpu: Nehalem-x86_64-cpu: Opteron_G1-v1-x86_64-cpu: Opteron_G1-x86_64-cpu: Opteron_G2-v1-x86_64-cpu: Opteron_G2-x86_64-cpu:
Opteron_G3-v1-x86_64-cpu: Opteron_G3-x86_64-cpu: Opteron_G4-v1-x86_64-cpu: Opteron_G4-x86_64-cpu: Opteron_G5-v1-x86_64-cpu:
Opteron_G5-x86_64-cpu: Penryn-v1-x86_64-cpu: Penryn-x86_64-cpu: SandyBridge-IBRS-x86_64-cpu: SandyBridge-v1-x86_64-cpu:
SandyBridge-v2-x86_64-cpu: SandyBridge-x86_64-cpu: Skylake-Client-IBRS-x86_64-cpu: Skylake-Client-noTSX-IBRS-x86_64-cpu:
Skylake-Client-v1-x86_64-cpu: Skylake-Client-v2-x86_64-cpu: Skylake-Client-v3-x86_64-cpu: Skylake-Client-v4-x86_64-cpu:
Skylake-Client-x86_64-cpu: Skylake-Server-IBRS-x86_64-cpu: Skylake-Server-noTSX-IBRS-x86_64-cpu: Skylake-Server-v1-x86_64-cpu:
Skylake-Server-v2-x86_64-cpu: Skylake-Server-v3-x86_64-cpu: Skylake-Server-v4-x86_64-cpu: Skylake-Server-v5-x86_64-cpu:
Skylake-Server-x86_64-cpu: Snowridge-v1-x86_64-cpu: Snowridge-v2-x86_64-cpu: Snowridge-v3-x86_64-cpu: Snowridge-v4-x86_64-cpu:
Snowridge-x86_64-cpu: VGA:PCI Westmere-IBRS-x86_64-cpu: Westmere-v1-x86_64-cpu: Westmere-v2-x86_64-cpu: Westmere-x86_64-cpu: acpi-erst:PCI
adlib:ISA am53c974:PCI amd-iommu:System athlon-v1-x86_64-cpu: athlon-x86_64-cpu: ati-vga:PCI base-x86_64-cpu: bochs-display:PCI
ccid-card-emulated:ccid-bus ccid-card-passthru:ccid-bus cirrus-vga:PCI core2duo-v1-x86_64-cpu: core2duo-x86_64-cpu: coreduo-v1-x86_64-cpu:
coreduo-x86_64-cpu: cs4231a:ISA ctucan_pci:PCI cxl-downstream:PCI cxl-rp:PCI cxl-type3:PCI cxl-upstream:PCI dc390:PCI e1000-82544gc:PCI
e1000-82545em:PCI e1000:PCI:e1000-82540em e1000e:PCI edu:PCI floppy:floppy-bus guest-loader: gus:ISA hda-duplex:HDA hda-micro:HDA
hda-output:HDA host-x86_64-cpu: hv-syndbg: hyperv-testdev:ISA i2c-ddc:i2c-bus i6300esb:PCI i8042:ISA i82550:PCI i82551:PCI i82557a:PCI
i82557b:PCI i82557c:PCI i82558a:PCI i82558b:PCI i82559a:PCI i82559b:PCI i82559c:PCI i82559er:PCI i82562:PCI i82801:PCI i82801b11-bridge:PCI
ib700:ISA ich9-ahci:PCI:ahci ich9-intel-hda:PCI ich9-usb-ehci1:PCI ich9-usb-ehci2:PCI ich9-usb-uhci1:PCI ich9-usb-uhci2:PCI
ich9-usb-uhci3:PCI ich9-usb-uhci4:PCI ich9-usb-uhci5:PCI ich9-usb-uhci6:PCI ide-cd:IDE ide-hd:IDE intel-hda:PCI intel-iommu:System
ioh3420:PCI ipmi-bmc-extern: ipmi-bmc-sim: ipoctal232:IndustryPack isa-applesmc:ISA isa-cirrus-vga:ISA isa-debug-exit:ISA isa-debugcon:ISA
isa-fdc:ISA isa-ide:ISA isa-ipmi-bt:ISA isa-ipmi-kcs:ISA isa-parallel:ISA isa-serial:ISA isa-vga:ISA ivshmem-doorbell:PCI ivshmem-plain:PCI
kvaser_pci:PCI kvm32-v1-x86_64-cpu: kvm32-x86_64-cpu: kvm64-v1-x86_64-cpu: kvm64-x86_64-cpu: loader: lsi53c810:PCI lsi53c895a:PCI:lsi
max-x86_64-cpu: mc146818rtc:ISA megasas-gen2:PCI megasas:PCI mioe3680_pci:PCI mptsas1068:PCI n270-v1-x86_64-cpu: n270-x86_64-cpu:
ne2k_isa:ISA ne2k_pci:PCI nec-usb-xhci:PCI nvdimm: nvme-ns:nvme-bus nvme-subsys: nvme:PCI pc-dimm: pc-testdev:ISA pci-bridge-seat:PCI
pci-bridge:PCI pci-ipmi-bt:PCI pci-ipmi-kcs:PCI pci-ohci:PCI pci-serial-2x:PCI pci-serial-4x:PCI pci-serial:PCI pci-testdev:PCI
pcie-pci-bridge:PCI pcie-root-port:PCI pcm3680_pci:PCI pcnet:PCI pentium-v1-x86_64-cpu: pentium-x86_64-cpu: pentium2-v1-x86_64-cpu:
pentium2-x86_64-cpu: pentium3-v1-x86_64-cpu: pentium3-x86_64-cpu: phenom-v1-x86_64-cpu: phenom-x86_64-cpu: piix3-ide:PCI piix3-usb-uhci:PCI
piix4-ide:PCI piix4-usb-uhci:PCI pvpanic-pci:PCI pvpanic:ISA pvrdma:PCI pvscsi:PCI pxb-cxl:PCI pxb-pcie:PCI pxb:PCI qemu-xhci:PCI
qemu32-v1-x86_64-cpu: qemu32-x86_64-cpu: qemu64-v1-x86_64-cpu: qemu64-x86_64-cpu: qxl-vga:PCI qxl:PCI ramfb:System rocker:PCI rtl8139:PCI
sb16:ISA scsi-block:SCSI scsi-cd:SCSI scsi-generic:SCSI scsi-hd:SCSI sd-card:sd-bus sdhci-pci:PCI secondary-vga:PCI sga:ISA
smbus-ipmi:i2c-bus tpci200:PCI tpm-crb: tpm-tis:ISA tulip:PCI u2f-passthru:usb-bus usb-audio:usb-bus usb-bot:usb-bus usb-braille:usb-bus
usb-ccid:usb-bus usb-ehci:PCI usb-host:usb-bus usb-hub:usb-bus usb-kbd:usb-bus usb-mouse:usb-bus usb-mtp:usb-bus usb-net:usb-bus
usb-redir:usb-bus usb-serial:usb-bus usb-storage:usb-bus usb-tablet:usb-bus usb-uas:usb-bus usb-wacom-tablet:usb-bus
vfio-pci-igd-lpc-bridge:PCI vfio-pci-nohotplug:PCI vfio-pci:PCI vhost-scsi-pci-non-transitional:PCI vhost-scsi-pci-transitional:PCI
vhost-scsi-pci:PCI vhost-scsi:virtio-bus vhost-user-blk-pci-non-transitional:PCI vhost-user-blk-pci-transitional:PCI vhost-user-blk-pci:PCI
vhost-user-blk:virtio-bus vhost-user-fs-device:virtio-bus vhost-user-fs-pci:PCI vhost-user-gpio-device:virtio-bus vhost-user-gpio-pci:PCI
vhost-user-gpu-pci:PCI vhost-user-gpu:virtio-bus vhost-user-i2c-device:virtio-bus vhost-user-i2c-pci:PCI vhost-user-input-pci:PCI
vhost-user-input:virtio-bus vhost-user-rng-pci:PCI vhost-user-rng:virtio-bus vhost-user-scsi-pci-non-transitional:PCI
vhost-user-scsi-pci-transitional:PCI vhost-user-scsi-pci:PCI vhost-user-scsi:virtio-bus vhost-user-vga:PCI
vhost-user-vsock-device:virtio-bus vhost-user-vsock-pci-non-transitional:PCI vhost-user-vsock-pci:PCI vhost-vsock-device:virtio-bus
vhost-vsock-pci-non-transitional:PCI vhost-vsock-pci:PCI virtconsole:virtio-serial-bus virtio-9p-device:virtio-bus
virtio-9p-pci-non-transitional:PCI virtio-9p-pci-transitional:PCI virtio-9p-pci:PCI:virtio-9p virtio-balloon-device:virtio-bus
virtio-balloon-pci-non-transitional:PCI virtio-balloon-pci-transitional:PCI virtio-balloon-pci:PCI:virtio-balloon
virtio-blk-device:virtio-bus virtio-blk-pci-non-transitional:PCI virtio-blk-pci-transitional:PCI virtio-blk-pci:PCI:virtio-blk
virtio-crypto-device:virtio-bus virtio-crypto-pci:PCI virtio-gpu-device:virtio-bus virtio-gpu-gl-device:virtio-bus
virtio-gpu-gl-pci:PCI:virtio-gpu-gl virtio-gpu-pci:PCI:virtio-gpu virtio-input-host-device:virtio-bus
virtio-input-host-pci:PCI:virtio-input-host virtio-iommu-device:virtio-bus virtio-iommu-pci:PCI:virtio-iommu
virtio-keyboard-device:virtio-bus virtio-keyboard-pci:PCI:virtio-keyboard virtio-mem-pci:PCI virtio-mem:virtio-bus
virtio-mouse-device:virtio-bus virtio-mouse-pci:PCI:virtio-mouse virtio-net-device:virtio-bus virtio-net-pci-non-transitional:PCI
virtio-net-pci-transitional:PCI virtio-net-pci:PCI:virtio-net virtio-pmem-pci:PCI virtio-pmem:virtio-bus virtio-rng-device:virtio-bus
virtio-rng-pci-non-transitional:PCI virtio-rng-pci-transitional:PCI virtio-rng-pci:PCI:virtio-rng virtio-scsi-device:virtio-bus
virtio-scsi-pci-non-transitional:PCI virtio-scsi-pci-transitional:PCI virtio-scsi-pci:PCI:virtio-scsi virtio-serial-device:virtio-bus
virtio-serial-pci-non-transitional:PCI virtio-serial-pci-transitional:PCI virtio-serial-pci:PCI:virtio-serial
virtio-tablet-device:virtio-bus virtio-tablet-pci:PCI:virtio-tablet virtio-vga-gl:PCI virtio-vga:PCI virtserialport:virtio-serial-bus
vmbus-bridge:System vmcoreinfo: vmgenid: vmmouse:ISA vmware-svga:PCI vmxnet3:PCI x-pci-proxy-dev:PCI x3130-upstream:PCI
xio3130-downstream:PCI
`;

const BY_NAME = new Map<string, DeviceModel>();
for (const entry of MODELS.split(/\s+/)) {
  if (entry === '') continue;
  const [name = '', bus = '', alias] = entry.split(':');
  const m = { name, bus };
  BY_NAME.set(name, m);
  if (alias !== undefined) BY_NAME.set(alias, m);
}

/** qdev_get_device_class's lookup: a model by its name or alias. */
export function deviceModel(name: string): DeviceModel | undefined {
  return BY_NAME.get(name);
}

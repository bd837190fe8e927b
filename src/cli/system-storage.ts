/**
 * The storage part of qemu-system's command line: every -drive and the
 * storage -devices, turned into setup steps in the order QEMU creates
 * them (vl.c): the drives (after every -blockdev), the board's own IDE
 * and floppy drives at machine init, the -devices in command-line order,
 * then the devices if=virtio drives asked for.
 */
import type { SetupStep } from '../daemon.js';
import { idWellFormed } from '../blockdev/monitor-backends.js';
import { boardBuses, type DrivePlan } from '../machine/drive.js';
import { deviceModel } from '../machine/device-models.js';
import type { DeviceSpec } from '../machine/devices.js';
import { boardBus, childBusOf } from '../machine/hotplug.js';
import { busOf, type DevicePlan, storageDriver } from '../machine/storage-devices.js';
import type { SystemOption } from './system-args.js';
import { DriveOptsError, DrivePlanner } from './system-drive.js';

interface DeviceOpt {
  opt: SystemOption;
  o: Map<string, string>;
}

export class StoragePlanner {
  private readonly drives: Array<{ opt: SystemOption; o: Map<string, string> }> = [];
  private readonly devices: DeviceOpt[] = [];
  private readonly deviceIds = new Set<string>();
  private readonly planner: DrivePlanner;

  constructor(
    private readonly machine: string,
    /** QemuOpts' errors, reported at once with the option's location. */
    private readonly fail: (opt: SystemOption, message: string) => Error,
    /** -snapshot: drives default to snapshot=on. */
    private readonly snapshot = false,
  ) {
    this.planner = new DrivePlanner(boardBuses(machine));
  }

  drive(opt: SystemOption): void {
    try {
      const o = this.planner.parse(opt.value ?? '');
      if (this.snapshot && !o.has('snapshot')) o.set('snapshot', 'on');
      this.drives.push({ opt, o });
    } catch (err) {
      if (err instanceof DriveOptsError) throw this.fail(opt, err.message);
      throw err;
    }
  }

  device(opt: SystemOption, o: Map<string, string>): void {
    const id = o.get('id');
    if (id !== undefined) {
      if (!idWellFormed(id)) throw this.fail(opt, "Parameter 'id' expects an identifier\nIdentifiers consist of letters, digits, '-', '.', '_', starting with a letter.");
      if (this.deviceIds.has(id)) throw this.fail(opt, `Duplicate ID '${id}' for device`);
      this.deviceIds.add(id);
    }
    this.devices.push({ opt, o });
  }

  steps(): SetupStep[] {
    const out: SetupStep[] = [];
    const plans: Array<{ opt: SystemOption; plan: DrivePlan }> = [];
    for (const d of this.drives) {
      const step = this.planner.plan(d.o);
      // A legacy disk option (-hdb FILE) is named as it was written, not as the -drive it stands for.
      const arg = d.opt.location !== undefined ? '' : (d.opt.value ?? '');
      const spelled = d.opt.location ?? d.opt.spelled;
      if ('invalid' in step) out.push({ option: 'drive', arg, spelled, invalid: step.invalid });
      else {
        out.push({ option: 'drive', arg, spelled, drive: step.plan });
        plans.push({ opt: d.opt, plan: step.plan });
      }
    }
    out.push(...this.boardDevices(plans));
    let anon = 0;
    /** The first host adapter's bus, where SCSI devices go without a bus=. */
    let scsiBus: string | undefined;
    const none = this.machine === 'none';
    for (const { opt, o } of this.devices) {
      const name = o.get('driver') ?? '';
      const id = o.get('id');
      const path = id !== undefined ? `/machine/peripheral/${id}` : `/machine/peripheral-anon/device[${anon++}]`;
      const model = deviceModel(name);
      const driver = storageDriver(name);
      const kind = driver ? busOf(driver) : model?.bus;
      const bus = o.get('bus') ?? (kind === 'SCSI' ? scsiBus : kind ? boardBus(this.machine, kind) : undefined);
      const iothread = o.get('iothread');
      const child = model ? childBusOf(model.name, id) : {};
      const spec: DeviceSpec = {
        model: model?.name ?? name,
        path,
        ...(id !== undefined ? { id } : {}),
        ...(bus !== undefined ? { bus } : {}),
        ...child,
        ...(iothread !== undefined ? { iothread } : {}),
      };
      if (child.childBusKind === 'SCSI') scsiBus ??= spec.childBus;
      // Devices with no storage have no guest to serve: they only take their place in the tree.
      if (!driver) {
        out.push({ option: 'device', arg: opt.value ?? '', spelled: opt.spelled, device: spec });
        continue;
      }
      const hasBus = !none && (kind === 'SCSI' ? scsiBus !== undefined : kind === 'floppy-bus' ? this.machine.startsWith('pc-i440fx') : true);
      const bool = (k: string) => {
        const v = o.get(k);
        return v === undefined || v === 'auto' ? undefined : v === 'on' || v === 'true' || v === 'yes';
      };
      const writeCache = bool('write-cache');
      const plan: DevicePlan = {
        driver,
        path,
        shareRw: bool('share-rw') ?? false,
        ...(id !== undefined ? { id } : {}),
        ...(o.has('drive') ? { drive: o.get('drive')! } : {}),
        ...(writeCache !== undefined ? { writeCache } : {}),
        ...(hasBus ? {} : { noBus: `No '${kind}' bus found for device '${name}'` }),
      };
      out.push({ option: 'device', arg: opt.value ?? '', spelled: opt.spelled, device: { ...spec, storage: plan } });
    }
    for (const { opt, plan } of plans) {
      if (plan.type !== 'virtio') continue;
      const path = `/machine/peripheral-anon/device[${anon++}]`;
      const storage: DevicePlan = { driver: 'virtio-blk-pci', path, drive: plan.id, shareRw: false };
      const bus = boardBus(this.machine, 'PCI');
      // The device's options were made by the -drive, so its errors name the -drive.
      out.push({ option: 'device', arg: opt.value ?? '', spelled: opt.spelled, device: { model: 'virtio-blk-pci', path, ...(bus ? { bus } : {}), storage } });
    }
    return out;
  }

  /**
   * The IDE and floppy devices the pc board makes for its drives at
   * machine init, under /machine/unattached (the numbers are where the
   * board's other devices leave them: floppies first, then IDE).
   */
  private boardDevices(plans: Array<{ opt: SystemOption; plan: DrivePlan }>): SetupStep[] {
    const q35 = this.machine.startsWith('pc-q35');
    const floppies = plans.filter((p) => p.plan.type === 'floppy').sort((a, b) => a.plan.unit - b.plan.unit);
    const ides = plans.filter((p) => p.plan.type === 'ide').sort((a, b) => a.plan.bus - b.plan.bus || a.plan.unit - b.plan.unit);
    const floppyBase = q35 ? 12 : 13;
    // q35 has no floppy controller until a floppy drive asks for one (one more device).
    const ideBase = q35 ? 16 + (floppies.length > 0 ? 1 + floppies.length : 0) : 18 + floppies.length;
    const out: SetupStep[] = [];
    const add = (p: { opt: SystemOption; plan: DrivePlan }, driver: DevicePlan['driver'], n: number) => {
      const path = `/machine/unattached/device[${n}]`;
      const bus = driver === 'floppy' ? 'floppy-bus.0' : `ide.${p.plan.bus}`;
      out.push({ option: 'device', arg: '', spelled: '', device: { model: driver, path, bus, storage: { driver, path, drive: p.plan.id, shareRw: false } } });
    };
    floppies.forEach((p, i) => add(p, 'floppy', floppyBase + i));
    ides.forEach((p, i) => add(p, p.plan.mediaCd ? 'ide-cd' : 'ide-hd', ideBase + i));
    // The flash devices are the machine's own children, named by unit.
    for (const p of plans.filter((x) => x.plan.type === 'pflash')) out.push({ option: 'device', arg: '', spelled: '', device: { model: 'cfi.pflash01', path: `/machine/system.flash${p.plan.unit}`, storage: { driver: 'cfi.pflash01', path: `/machine/system.flash${p.plan.unit}`, drive: p.plan.id, shareRw: false } } });
    return out;
  }
}

/**
 * A -drive as drive_new leaves it for blockdev_init (the DriveInfo and the
 * options), and the buses the machine's board has for if=ide and
 * if=floppy drives.
 */
import type { ThrottleConfig } from '../blockdev/throttle/config.js';

export type DriveInterface = 'none' | 'ide' | 'scsi' | 'floppy' | 'pflash' | 'mtd' | 'sd' | 'virtio' | 'xen';
export const INTERFACES: readonly DriveInterface[] = ['none', 'ide', 'scsi', 'floppy', 'pflash', 'mtd', 'sd', 'virtio', 'xen'];

export interface DrivePlan {
  id: string;
  type: DriveInterface;
  bus: number;
  unit: number;
  mediaCd: boolean;
  /** The legacy `file=` (a file name or one of QEMU's pseudo-protocols). */
  file: string | undefined;
  readOnly: boolean;
  /** snapshot=on (or -snapshot): writes go to a temporary qcow2 overlay over the image, which is opened read-only. */
  snapshot?: boolean;
  writeCache: boolean;
  detectZeroes: 'off' | 'on' | 'unmap';
  onReadError: 'report' | 'ignore' | 'stop';
  onWriteError: 'report' | 'ignore' | 'enospc' | 'stop';
  /** I/O limits the drive's BlockBackend starts with (its group defaults to the drive's id). */
  throttle?: { cfg: ThrottleConfig; group: string | undefined };
  /** The options left for bdrv_open (node-name, driver, cache.*, file.*, backing.*, driver options), in the order given. */
  options: Map<string, string>;
}

/** The buses a machine's board gives -drive if=ide and if=floppy (units per bus, buses). */
export interface BoardBuses {
  ideUnits: number;
  ideBuses: number;
  floppies: number;
  /** -drive if=pflash units: the board's system.flash0 and system.flash1. */
  flashes: number;
}

export function boardBuses(machine: string): BoardBuses | undefined {
  // i440fx: two IDE channels of two units; q35: six AHCI ports of one unit. Both have a floppy controller for two drives.
  if (machine.startsWith('pc-i440fx')) return { ideUnits: 2, ideBuses: 2, floppies: 2, flashes: 2 };
  if (machine.startsWith('pc-q35')) return { ideUnits: 1, ideBuses: 6, floppies: 2, flashes: 2 };
  return undefined;
}


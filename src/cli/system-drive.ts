/**
 * qemu-system's -drive as blockdev.c's drive_new reads it, the part that
 * needs no block layer: the legacy keys (if, media, index/bus/unit, cache,
 * readonly, werror/rerror…) taken out, the drive's default id and place on
 * its bus chosen, and what is left kept as the options the node opens
 * with (src/qmp/commands/drive.ts opens it when its turn comes).
 */
import { idWellFormed } from '../blockdev/monitor-backends.js';
import { type BoardBuses, type DrivePlan, INTERFACES } from '../machine/drive.js';
import { parseOptsString } from './daemon-args.js';
import { driveThrottle, renameLegacyDriveOptions, takeThrottleOptions } from './drive-throttle.js';

/** A -drive that fails when its turn comes (drive_new's errors), or its plan. */
export type DriveStep = { invalid: string } | { plan: DrivePlan };

/** QemuOpts' own checks, made when the option is parsed: these fail before anything is created. */
export class DriveOptsError extends Error {}

const CACHE_MODES: Record<string, { writeback: boolean; direct: boolean; noFlush: boolean }> = {
  writeback: { writeback: true, direct: false, noFlush: false },
  none: { writeback: true, direct: true, noFlush: false },
  off: { writeback: true, direct: true, noFlush: false },
  writethrough: { writeback: false, direct: false, noFlush: false },
  directsync: { writeback: false, direct: true, noFlush: false },
  unsafe: { writeback: true, direct: false, noFlush: true },
};

const ON = new Set(['on', 'yes', 'true', 'y']);
const OFF = new Set(['off', 'no', 'false', 'n']);
const bool = (key: string, v: string | undefined, def: boolean): boolean => {
  if (v === undefined) return def;
  if (ON.has(v)) return true;
  if (OFF.has(v)) return false;
  throw new Error(`Parameter '${key}' expects 'on' or 'off'`);
};
const num = (key: string, v: string | undefined, def: number): number => {
  if (v === undefined) return def;
  if (!/^-?\d+$/.test(v)) throw new Error(`Parameter '${key}' expects a number`);
  return Number(v);
};

/** Reads every -drive of the command line in order; `taken` holds the bus places given out so far. */
export class DrivePlanner {
  private readonly ids = new Set<string>();
  private readonly taken = new Set<string>();
  readonly drives: DrivePlan[] = [];

  constructor(private readonly board: BoardBuses | undefined) {}

  /** qemu_opts_parse for "drive": only the id is checked now (well formed, not used twice). */
  parse(arg: string): Map<string, string> {
    const o = parseOptsString(arg);
    const id = o.get('id');
    if (id !== undefined) {
      if (!idWellFormed(id)) throw new DriveOptsError("Parameter 'id' expects an identifier\nIdentifiers consist of letters, digits, '-', '.', '_', starting with a letter.");
      if (this.ids.has(id)) throw new DriveOptsError(`Duplicate ID '${id}' for drive`);
      this.ids.add(id);
    }
    return o;
  }

  /** drive_new up to blockdev_init; the message of its first error otherwise. */
  plan(all: Map<string, string>): DriveStep {
    try {
      const p = this.make(new Map(all));
      this.drives.push(p);
      return { plan: p };
    } catch (err) {
      return { invalid: err instanceof Error ? err.message : String(err) };
    }
  }

  private make(o: Map<string, string>): DrivePlan {
    const take = (k: string) => {
      const v = o.get(k);
      o.delete(k);
      return v;
    };
    renameLegacyDriveOptions(o);
    const cache = take('cache');
    let writeback = true;
    if (cache !== undefined) {
      const m = CACHE_MODES[cache];
      if (!m) throw new Error('invalid cache option');
      writeback = m.writeback;
      if (!o.has('cache.direct')) o.set('cache.direct', m.direct ? 'on' : 'off');
      if (!o.has('cache.no-flush')) o.set('cache.no-flush', m.noFlush ? 'on' : 'off');
    }
    writeback = bool('cache.writeback', take('cache.writeback'), writeback);
    const id = take('id');
    const media = take('media');
    let mediaCd = false;
    let readOnly = false;
    if (media !== undefined) {
      if (media === 'cdrom') mediaCd = readOnly = true;
      else if (media !== 'disk') throw new Error(`'${media}' invalid media`);
    }
    readOnly ||= bool('read-only', take('read-only'), false);
    if (bool('copy-on-read', take('copy-on-read'), false) && !readOnly) throw new Error('copy-on-read is not supported yet by blockemu system');
    const ifName = take('if') ?? 'ide';
    const type = INTERFACES.find((t) => t === ifName);
    if (!type) throw new Error(`unsupported bus type '${ifName}'`);
    const maxDevs = type === 'ide' ? (this.board?.ideUnits ?? 2) : type === 'scsi' ? 7 : 0;
    let bus = num('bus', take('bus'), 0);
    let unit = num('unit', take('unit'), -1);
    const index = num('index', take('index'), -1);
    if (index !== -1) {
      if (bus !== 0 || unit !== -1) throw new Error('index cannot be used with bus and unit');
      bus = maxDevs ? Math.floor(index / maxDevs) : 0;
      unit = maxDevs ? index % maxDevs : index;
    }
    const place = (b: number, u: number) => `${type}:${b}:${u}`;
    if (unit === -1) {
      unit = 0;
      while (this.taken.has(place(bus, unit))) {
        unit++;
        if (maxDevs && unit >= maxDevs) {
          unit -= maxDevs;
          bus++;
        }
      }
    }
    if (maxDevs && unit >= maxDevs) throw new Error(`unit ${unit} too big (max is ${maxDevs - 1})`);
    if (this.taken.has(place(bus, unit))) throw new Error(`drive with bus=${bus}, unit=${unit} (index=${index}) exists`);
    const mediastr = type === 'ide' || type === 'scsi' ? (mediaCd ? '-cd' : '-hd') : '';
    const name = id ?? (maxDevs ? `${type}${bus}${mediastr}${unit}` : `${type}${mediastr}${unit}`);
    const file = take('file');
    const werror = take('werror');
    if (werror !== undefined && !['ide', 'scsi', 'virtio', 'none'].includes(type)) throw new Error('werror is not supported by this bus type');
    const rerror = take('rerror');
    if (rerror !== undefined && !['ide', 'scsi', 'virtio', 'none'].includes(type)) throw new Error('rerror is not supported by this bus type');
    // blockdev_init: its common options (the numbers parsed as they are absorbed), then the error actions.
    const throttling = takeThrottleOptions(o);
    const snapshot = bool('snapshot', take('snapshot'), false);
    const aio = o.get('aio');
    if (aio !== undefined && !['threads', 'native', 'io_uring'].includes(aio)) throw new Error('invalid aio option');
    const throttle = driveThrottle(throttling);
    const dz = take('detect-zeroes') ?? 'off';
    if (dz !== 'off' && dz !== 'on' && dz !== 'unmap') throw new Error(`invalid parameter value: ${dz}`);
    const format = take('format');
    if (format !== undefined) {
      if (o.has('driver')) throw new Error("Cannot specify both 'driver' and 'format'");
      o.set('driver', format);
    }
    const errorAction = (v: string, read: boolean) => {
      if (v === 'report' || v === 'ignore' || v === 'stop' || (!read && v === 'enospc')) return v;
      throw new Error(`'${v}' invalid ${read ? 'read' : 'write'} error action`);
    };
    const onWriteError = werror === undefined ? 'enospc' : (errorAction(werror, false) as DrivePlan['onWriteError']);
    const onReadError = rerror === undefined ? 'report' : (errorAction(rerror, true) as DrivePlan['onReadError']);
    if (type === 'pflash' && (!this.board || bus > 0 || unit >= this.board.flashes)) throw new Error(`machine type does not support if=pflash,bus=${bus},unit=${unit}`);
    if (type === 'scsi' || type === 'mtd' || type === 'sd' || type === 'xen') throw new Error(`machine type does not support if=${type},bus=${bus},unit=${unit}`);
    if (type === 'ide' && (!this.board || bus >= this.board.ideBuses)) throw new Error(`machine type does not support if=ide,bus=${bus},unit=${unit}`);
    if (type === 'floppy' && (!this.board || unit >= this.board.floppies)) throw new Error(`machine type does not support if=floppy,bus=${bus},unit=${unit}`);
    this.taken.add(place(bus, unit));
    return { id: name, type, bus, unit, mediaCd, file, readOnly, snapshot, writeCache: writeback, detectZeroes: dz, onReadError, onWriteError, ...(throttle ? { throttle } : {}), options: o };
  }
}

import type { BlockdevSpec } from '../blockdev/open.js';
import type { InvalidStep, MonitorConfig, SetupStep } from '../daemon.js';
import { parseCliObject } from '../qmp/cli-object.js';
import { QmpError } from '../qmp/error.js';
import { BlockdevOptions } from '../qmp/schema/block-core.js';
import { ObjectOptions } from '../qmp/schema/qom.js';
import { parseOptsString } from './daemon-args.js';
import type { SystemOption } from './system-args.js';
import { resolveMachine } from './system-probes.js';
import { StoragePlanner } from './system-storage.js';

/** A failure in one option, as qemu-system reports it: "-opt value: message" (QEMU's error location). */
export class SystemOptionError extends Error {
  constructor(opt: SystemOption | undefined, message: string) {
    super(opt === undefined ? message : `${opt.location ?? (opt.value === undefined ? opt.spelled : `${opt.spelled} ${opt.value}`)}: ${message}`);
  }
}

export type Probe = 'help' | 'version' | 'machine-help' | 'device-help' | 'format-help';

/** Where a -qtest connection goes: nowhere (`null`) or a Unix socket blockemu connects to. */
export type QtestTarget = { kind: 'null' } | { kind: 'socket'; path: string };

export interface SystemPlan {
  /** A probe answers and exits without starting anything. */
  probe?: Probe;
  /** The machine type, aliases resolved (pc → pc-i440fx-7.2). */
  machine: string;
  /** -S: the machine starts in prelaunch until `cont`. */
  startPaused: boolean;
  /** -incoming: where the machine's state comes from (a migration URI, or `defer` for migrate-incoming). */
  incoming?: string;
  /** -loadvm: the snapshot every disk goes back to once the machine and its monitors are up. */
  loadvm?: string;
  monitors: MonitorConfig[];
  chardevs: string[];
  setup: SetupStep[];
  qtest?: QtestTarget;
}

interface Chardev {
  opt: SystemOption;
  backend: string;
  path?: string;
  /** fd=N: a connected socket inherited from the parent. */
  fd?: number;
  server: boolean;
}

const ON = new Set(['on', 'yes', 'true', 'y']);
const OFF = new Set(['off', 'no', 'false', 'n']);

function flag(opt: SystemOption, o: Map<string, string>, key: string, def: boolean): boolean {
  const v = o.get(key);
  if (v === undefined) return def;
  if (ON.has(v)) return true;
  if (OFF.has(v)) return false;
  throw new SystemOptionError(opt, `Parameter '${key}' expects 'on' or 'off'`);
}

/**
 * Turns qemu-system's options into what `blockemu system` starts: the
 * machine, its monitors, and the block layer's --blockdev/--object steps
 * (carried out in order, as QEMU creates them). Chardevs are all created
 * before the monitors (QEMU's order too), so a -mon may name one defined
 * after it. Options a storage-only process cannot honour are refused.
 */
export function planSystem(options: readonly SystemOption[]): SystemPlan {
  const plan: SystemPlan = { machine: resolveMachine('pc')!, startPaused: false, monitors: [], chardevs: [], setup: [] };
  const chardevs = new Map<string, Chardev>();
  const mons: SystemOption[] = [];
  const storage: SystemOption[] = [];
  let loadvm: string | undefined;
  let preconfig = false;
  let snapshot = false;
  const deferred = (opt: SystemOption & { value: string }, make: () => SetupStep): SetupStep => {
    try {
      return make();
    } catch (err) {
      if (err instanceof QmpError) return { option: opt.name as InvalidStep['option'], arg: opt.value, spelled: opt.spelled, invalid: err.desc };
      throw err;
    }
  };
  for (const opt of options) {
    const value = opt.value ?? '';
    switch (opt.name) {
      case 'h':
      case 'help':
        return { ...plan, probe: 'help' };
      case 'version':
        return { ...plan, probe: 'version' };
      case 'S':
        plan.startPaused = true;
        break;
      case 'nodefaults':
        break; // blockemu creates no default devices to leave out.
      case 'snapshot':
        snapshot = true; // Every -drive that does not say otherwise gets snapshot=on (vl.c's drive_enable_snapshot).
        break;
      case 'loadvm':
        loadvm = value;
        break;
      case 'incoming':
        plan.incoming = value; // The last one counts, as in vl.c.
        break;
      case 'preconfig':
        preconfig = true;
        break;
      case 'm':
      case 'name':
      case 'no-reboot':
      case 'no-shutdown':
        break; // Of the guest (its memory, its name, what its reset or power-off does): there is no guest here.
      case 'nographic':
        break; // No display; the serial port and HMP monitor it would put on stdio do not exist here (common.qemu passes -serial none -monitor none with it).
      case 'monitor':
        // -monitor's shorthand chardev in readline mode (monitor_parse): a human monitor.
        if (value === 'stdio') plan.monitors.push({ path: 'stdio', connect: 'stdio', origin: `${opt.spelled} ${value}`, hmp: true });
        else if (value !== 'none') throw new SystemOptionError(opt, 'only -monitor stdio and -monitor none are supported by blockemu system');
        break;
      case 'M':
      case 'machine': {
        const o = parseOptsString(value, 'type');
        const type = o.get('type');
        if (type === 'help') return { ...plan, probe: 'machine-help' };
        if (type !== undefined) {
          const m = resolveMachine(type);
          // QEMU reports this one without the option's location.
          if (!m) throw new SystemOptionError(undefined, 'unsupported machine type\nUse -machine help to list supported machines');
          plan.machine = m;
        }
        const accel = o.get('accel');
        if (accel !== undefined) checkAccel(opt, accel);
        break;
      }
      case 'accel':
        checkAccel(opt, parseOptsString(value, 'accel').get('accel') ?? '');
        break;
      case 'display':
        if (parseOptsString(value, 'type').get('type') !== 'none') throw new SystemOptionError(opt, 'blockemu system has no display; only -display none is supported');
        break;
      case 'vga':
        if (value !== 'none') throw new SystemOptionError(opt, 'blockemu system has no display; only -vga none is supported');
        break;
      case 'serial':
        if (value !== 'none' && value !== 'null' && !value.startsWith('chardev:')) throw new SystemOptionError(opt, 'blockemu system has no serial port; only none, null or chardev:<id> (ignored) are supported');
        break;
      case 'device': {
        if (parseOptsString(value, 'driver').get('driver') === 'help') return { ...plan, probe: 'device-help' };
        storage.push(opt);
        break;
      }
      case 'drive': {
        if (parseOptsString(value).get('format') === 'help') return { ...plan, probe: 'format-help' };
        storage.push(opt);
        break;
      }
      case 'blockdev':
        plan.setup.push(deferred(opt as SystemOption & { value: string }, () => ({ option: 'blockdev', arg: value, spelled: opt.spelled, spec: parseCliObject(BlockdevOptions, value, 'driver') as BlockdevSpec })));
        break;
      case 'object':
        plan.setup.push(deferred(opt as SystemOption & { value: string }, () => ({ option: 'object', arg: value, spelled: opt.spelled, object: parseCliObject(ObjectOptions, value, 'qom-type') })));
        break;
      case 'chardev':
        addChardev(opt, chardevs);
        break;
      case 'set':
        setOption(opt, storage);
        break;
      case 'mon':
        mons.push(opt);
        break;
      case 'qmp':
        plan.monitors.push(qmpMonitor(opt));
        break;
      case 'qmp-pretty':
        plan.monitors.push({ ...qmpMonitor(opt), pretty: true });
        break;
      case 'qtest':
        plan.qtest = qtestTarget(opt);
        break;
    }
  }
  plan.chardevs = [...chardevs.keys()];
  // Drives and devices come after every -blockdev and -object, whatever their place on the line (vl.c).
  const sp = new StoragePlanner(plan.machine, (opt, message) => new SystemOptionError(opt, message), snapshot);
  for (const opt of storage) {
    if (opt.name === 'drive') sp.drive(opt);
    else sp.device(opt, parseOptsString(opt.value ?? '', 'driver'));
  }
  plan.setup.push(...sp.steps());
  // qemu_validate_options (with Debian's 7.2.9 patch): -loadvm goes with neither -incoming nor -preconfig.
  if (loadvm !== undefined && plan.incoming !== undefined) throw new SystemOptionError(undefined, "'incoming' and 'loadvm' options are mutually exclusive");
  if (loadvm !== undefined && preconfig) throw new SystemOptionError(undefined, "'preconfig' and 'loadvm' options are mutually exclusive");
  if (preconfig) throw new SystemOptionError(undefined, '-preconfig is not supported by blockemu system (there is no machine to configure before it starts)');
  if (loadvm !== undefined) plan.loadvm = loadvm;
  for (const opt of mons) {
    const o = parseOptsString(opt.value ?? '', 'chardev');
    const id = o.get('chardev');
    const dev = id === undefined ? undefined : chardevs.get(id);
    if (!dev) throw new SystemOptionError(opt, `chardev "${id ?? ''}" not found`);
    const mode = o.get('mode') ?? 'readline';
    if (mode !== 'control' && mode !== 'readline') throw new SystemOptionError(opt, `Parameter 'mode' does not accept value '${mode}'`);
    const pretty = flag(opt, o, 'pretty', false) ? { pretty: true } : {};
    if (mode === 'readline') {
      const origin = `${dev.opt.spelled} ${dev.opt.value ?? ''}`;
      if (dev.backend === 'stdio') plan.monitors.push({ path: 'stdio', connect: 'stdio', origin, hmp: true });
      else if (dev.fd !== undefined) plan.monitors.push({ path: `fd=${dev.fd}`, connect: 'fd', fd: dev.fd, origin, hmp: true });
      else throw new SystemOptionError(dev.opt, `only stdio and socket,fd=N chardevs can carry a human monitor in blockemu system`);
      continue;
    }
    // Opening the chardev is what fails, so QEMU's message names the -chardev.
    const origin = `${dev.opt.spelled} ${dev.opt.value ?? ''}`;
    if (dev.backend === 'stdio') plan.monitors.push({ path: 'stdio', connect: 'stdio', origin, ...pretty });
    else if (dev.fd !== undefined) plan.monitors.push({ path: `fd=${dev.fd}`, connect: 'fd', fd: dev.fd, origin, ...pretty });
    else if (dev.backend === 'socket' && dev.path !== undefined) plan.monitors.push({ path: dev.path, origin, ...pretty, ...(dev.server ? {} : { connect: 'socket' as const }) });
    else throw new SystemOptionError(dev.opt, `a monitor's chardev must be a Unix socket or stdio in blockemu system`);
  }
  return plan;
}

/**
 * -set group.id.arg=value (qemu_set_option): one more option for a -drive
 * or -device given before it with that id.
 */
function setOption(opt: SystemOption, storage: SystemOption[]): void {
  const value = opt.value ?? '';
  const m = /^([^.]{1,63})\.([^.]{1,63})\.([^=]{1,63})=(.*)$/s.exec(value);
  if (!m) throw new SystemOptionError(opt, `can't parse: "${value}"`);
  const [, group, id, arg, v] = m as unknown as [string, string, string, string, string];
  if (group !== 'device' && group !== 'drive') throw new SystemOptionError(opt, `-set ${group}.…: only the device and drive groups are supported by blockemu system`);
  let i = storage.length - 1;
  while (i >= 0 && !(storage[i]!.name === group && parseOptsString(storage[i]!.value ?? '', group === 'device' ? 'driver' : undefined).get('id') === id)) i--;
  if (i < 0) throw new SystemOptionError(opt, `there is no ${group} "${id}" defined`);
  const target = storage[i]!;
  storage[i] = { ...target, value: `${target.value ?? ''},${arg}=${v.replaceAll(',', ',,')}` };
}

function checkAccel(opt: SystemOption, accel: string): void {
  // Any accelerator QEMU has will do: there are no vCPUs to accelerate.
  for (const a of accel.split(':')) if (a !== 'qtest' && a !== 'tcg' && a !== 'kvm') throw new SystemOptionError(opt, `invalid accelerator ${a}`);
}

function addChardev(opt: SystemOption, chardevs: Map<string, Chardev>): void {
  const o = parseOptsString(opt.value ?? '', 'backend');
  const id = o.get('id');
  if (!id) throw new SystemOptionError(opt, 'chardev: no id specified');
  if (chardevs.has(id)) throw new SystemOptionError(opt, `attempt to add duplicate chardev id '${id}'`);
  const backend = o.get('backend') ?? '';
  if (backend === 'socket') {
    const path = o.get('path');
    const fd = o.get('fd');
    flag(opt, o, 'wait', true);
    if (path === undefined && fd !== undefined) {
      if (!/^\d+$/.test(fd)) throw new SystemOptionError(opt, `Parameter 'fd' expects uint32`);
      chardevs.set(id, { opt, backend, fd: Number(fd), server: false });
      return;
    }
    if (path === undefined) throw new SystemOptionError(opt, 'only Unix socket chardevs (path=… or fd=…) are supported by blockemu system');
    chardevs.set(id, { opt, backend, path, server: flag(opt, o, 'server', false) });
  } else if (backend === 'null' || backend === 'stdio') {
    chardevs.set(id, { opt, backend, server: false });
  } else {
    throw new SystemOptionError(opt, `chardev backend '${backend}' is not supported by blockemu system (socket, stdio and null are)`);
  }
}

/** -qmp's shorthand chardev: `unix:PATH[,server=on][,wait=off]` or `stdio`. */
function qmpMonitor(opt: SystemOption): MonitorConfig {
  const value = opt.value ?? '';
  const origin = `${opt.spelled} ${value}`;
  if (value === 'stdio') return { path: 'stdio', connect: 'stdio', origin };
  if (!value.startsWith('unix:')) throw new SystemOptionError(opt, 'only unix:<path> and stdio monitors are supported by blockemu system');
  const o = parseOptsString(value.slice('unix:'.length), 'path');
  const path = o.get('path');
  if (!path) throw new SystemOptionError(opt, 'unix: needs a path');
  flag(opt, o, 'wait', true);
  return { path, origin, ...(flag(opt, o, 'server', false) ? {} : { connect: 'socket' as const }) };
}

function qtestTarget(opt: SystemOption): QtestTarget {
  const value = opt.value ?? '';
  if (value === 'null') return { kind: 'null' };
  if (!value.startsWith('unix:')) throw new SystemOptionError(opt, 'only -qtest unix:path=<path> and -qtest null are supported by blockemu system');
  const o = parseOptsString(value.slice('unix:'.length), 'path');
  const path = o.get('path');
  if (!path) throw new SystemOptionError(opt, 'unix: needs a path');
  if (flag(opt, o, 'server', false)) throw new SystemOptionError(opt, 'a qtest server socket is not supported by blockemu system; blockemu connects to the harness');
  return { kind: 'socket', path };
}

import { resolve } from 'node:path';
import { LOG_LEVELS } from '../log.js';
import type { BlockdevSpec } from '../blockdev/open.js';
import type { DaemonConfig, InvalidStep, MonitorConfig, SetupStep } from '../daemon.js';
import { parseCliObject } from '../qmp/cli-object.js';
import { QmpError } from '../qmp/error.js';
import { BlockdevOptions } from '../qmp/schema/block-core.js';
import { BlockExportOptions, NbdServerOptions } from '../qmp/schema/block-export.js';
import { ObjectOptions } from '../qmp/schema/qom.js';
import { FaultOptions } from '../qmp/schema/blockemu-faults.js';
import { ArgsError, type DaemonOption, parseOptsString } from './daemon-args.js';

/** A failure in one option, reported as qemu-storage-daemon does: "--opt value: message". */
export class OptionError extends Error {
  constructor(opt: DaemonOption, message: string) {
    super('value' in opt ? `--${opt.name} ${opt.value}: ${message}` : `--${opt.name}: ${message}`);
  }
}

export interface DaemonPlan {
  config: Omit<DaemonConfig, 'makeParser'>;
  daemonize: boolean;
  help: boolean;
  version: boolean;
  /** blockemu's --log-level (the last one given wins, over the global option and BLOCKEMU_LOG_LEVEL). */
  logLevel?: string;
  /** blockemu's --record FILE: where the QMP traffic log goes. */
  record?: string;
}

/** The command line again, without --record: what a recording's header stores for a replay to start the same daemon. */
export function replayArgv(options: readonly DaemonOption[]): string[] {
  return options.filter((o) => o.name !== 'record').flatMap((o) => ('value' in o ? [`--${o.name}`, o.value] : [`--${o.name}`]));
}

interface Chardev {
  path: string;
  /** `--chardev stdio`: the monitor reads stdin and writes stdout. */
  stdio?: boolean;
  /** A socket without server=on: the daemon connects to `path` (iotests.py's QemuStorageDaemon listens there). */
  client?: boolean;
}

const bool = (opt: DaemonOption, key: string, v: string | undefined, def: boolean): boolean => {
  if (v === undefined) return def;
  if (v === 'on' || v === 'yes' || v === 'true' || v === 'y') return true;
  if (v === 'off' || v === 'no' || v === 'false' || v === 'n') return false;
  throw new OptionError(opt, `Parameter '${key}' expects 'on' or 'off'`);
};

/**
 * Turns the parsed options into a daemon configuration, in order and with
 * qemu-storage-daemon's checks: a monitor names a chardev defined before
 * it; only QMP monitors on Unix server sockets exist. Options we do not
 * implement yet are refused by name rather than ignored.
 */
export function planDaemon(options: DaemonOption[]): DaemonPlan {
  const chardevs = new Map<string, Chardev>();
  const monitors: MonitorConfig[] = [];
  const setup: SetupStep[] = [];
  const plan: DaemonPlan = { config: { monitors, setup }, daemonize: false, help: false, version: false };
  /**
   * A --blockdev, --nbd-server, --export or --object step; one that does
   * not parse fails only when its turn comes, since qemu-storage-daemon
   * carries out each option before it parses the next.
   */
  const deferred = (opt: DaemonOption & { value: string }, make: () => SetupStep): SetupStep => {
    try {
      return make();
    } catch (err) {
      if (err instanceof QmpError) return { option: opt.name as InvalidStep['option'], arg: opt.value, invalid: err.desc };
      throw err;
    }
  };
  for (const opt of options) {
    switch (opt.name) {
      case 'help':
        plan.help = true;
        return plan;
      case 'version':
        plan.version = true;
        return plan;
      case 'daemonize':
        plan.daemonize = true;
        break;
      case 'trace':
        break; // Tracing is QEMU's; our logs are --log-level.
      case 'pidfile':
        plan.config.pidfile = resolve(opt.value);
        break;
      case 'log-level':
        if (!(LOG_LEVELS as readonly string[]).includes(opt.value)) throw new OptionError(opt, `expected one of ${LOG_LEVELS.join(', ')}`);
        plan.logLevel = opt.value;
        break;
      case 'record':
        plan.record = resolve(opt.value);
        break;
      case 'clock':
        if (opt.value !== 'real' && opt.value !== 'virtual') throw new OptionError(opt, "expected 'real' or 'virtual'");
        plan.config.clock = opt.value;
        break;
      case 'chardev': {
        const o = parseOptsString(opt.value, 'backend');
        const id = o.get('id');
        if (!id) throw new OptionError(opt, 'chardev: no id specified');
        if (chardevs.has(id)) throw new OptionError(opt, `attempt to add duplicate chardev id '${id}'`);
        const backend = o.get('backend');
        if (backend === 'stdio') {
          // A monitor on stdin/stdout, as QEMU's iotests drive qemu-storage-daemon (tests/qsd-jobs).
          chardevs.set(id, { path: 'stdio', stdio: true });
          (plan.config.chardevs ??= []).push(id);
          break;
        }
        if (backend !== 'socket') throw new OptionError(opt, `chardev backend '${backend ?? ''}' is not supported (blockemu serves Unix sockets and stdio only)`);
        const path = o.get('path');
        if (!path) throw new OptionError(opt, 'chardev: socket: only Unix sockets (path=…) are supported by blockemu');
        const server = bool(opt, 'server', o.get('server'), false);
        bool(opt, 'wait', o.get('wait'), true);
        chardevs.set(id, { path: resolve(path), ...(server ? {} : { client: true }) });
        (plan.config.chardevs ??= []).push(id);
        break;
      }
      case 'monitor': {
        const o = parseOptsString(opt.value, 'chardev');
        const id = o.get('chardev');
        const dev = id === undefined ? undefined : chardevs.get(id);
        if (!dev) throw new OptionError(opt, `chardev "${id ?? ''}" not found`);
        const mode = o.get('mode') ?? 'control';
        if (mode !== 'control') throw new OptionError(opt, 'Only QMP is supported');
        monitors.push({ path: dev.path, ...(dev.stdio ? { connect: 'stdio' as const } : dev.client ? { connect: 'socket' as const } : {}), ...(bool(opt, 'pretty', o.get('pretty'), false) ? { pretty: true } : {}) });
        break;
      }
      case 'blockdev':
        setup.push(deferred(opt, () => ({ option: 'blockdev', arg: opt.value, spec: parseCliObject(BlockdevOptions, opt.value, 'driver') as BlockdevSpec })));
        break;
      case 'nbd-server':
        setup.push(deferred(opt, () => ({ option: 'nbd-server', arg: opt.value, server: parseCliObject(NbdServerOptions, opt.value) })));
        break;
      case 'export':
        setup.push(deferred(opt, () => ({ option: 'export', arg: opt.value, export: parseCliObject(BlockExportOptions, opt.value, 'type') })));
        break;
      case 'object':
        setup.push(deferred(opt, () => ({ option: 'object', arg: opt.value, object: parseCliObject(ObjectOptions, opt.value, 'qom-type') })));
        break;
      case 'fault':
        setup.push(deferred(opt, () => ({ option: 'fault', arg: opt.value, fault: parseCliObject(FaultOptions, opt.value) })));
        break;
    }
  }
  return plan;
}

export { ArgsError };

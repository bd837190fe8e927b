import { setLogLevel } from '../log.js';
import { Daemon, VERSION } from '../daemon.js';
import { boardBuses } from '../machine/drive.js';
import { Machine } from '../machine/run-state.js';
import { DrivePlanner } from './system-drive.js';
import { makeQmpParser } from '../qmp/parser.js';
import { ArgsError } from './daemon-args.js';
import { parseSystemArgs } from './system-args.js';
import { deviceHelp, formatHelp, machineHelp } from './system-probes.js';
import { QtestConnection } from './system-qtest.js';
import { planSystem, type Probe, SystemOptionError } from './system.js';
import { SYSTEM_PROG } from './tool-names.js';

const usage = (prog: string) => `usage: ${prog} [options]
blockemu system: a storage-only stand-in for qemu-system-x86_64 (QEMU 7.2's block layer, no guest)

Takes: -machine/-M <type>|help, -accel qtest|tcg|kvm, -S, -nodefaults,
       -m, -name, -no-reboot, -no-shutdown (accepted; there is no guest), -loadvm <tag>,
       -incoming defer|unix:<path>|tcp:<host>:<port>|exec:<cmd>|fd:<n> (from another blockemu system),
       -hda..-hdd|-cdrom|-fda|-fdb <file> or a bare <file> (as -hda),
       -display none, -vga none, -serial none|null|chardev:<id>,
       -blockdev <options>, -object <options>, -drive <options> | format=help,
       -device virtio-blk-pci|ide-hd|ide-cd|scsi-hd|scsi-cd|floppy,… (others ignored) | help,
       -chardev socket|stdio|null,id=<id>[,…],
       -mon chardev=<id>[,mode=readline|control][,pretty=on], -monitor stdio|none (HMP),
       -qmp[-pretty] unix:<path>[,server=on][,wait=off] | stdio,
       -qtest unix:path=<path> | null, -version, -help
`;

/** The text a probe prints (stdout) before the process exits 0. */
async function probeOutput(probe: Probe, prog: string): Promise<string> {
  switch (probe) {
    case 'help':
      return usage(prog);
    case 'version': {
      const v = VERSION.qemu;
      return `QEMU emulator version ${v.major}.${v.minor}.${v.micro} (${VERSION.package})\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n`;
    }
    case 'machine-help':
      return machineHelp();
    case 'device-help':
      return deviceHelp();
    case 'format-help':
      return formatHelp((await import('../blockdev/open.js')).SUPPORTED_DRIVERS);
  }
}

/**
 * `blockemu system`: qemu-system-x86_64's command line, then the machine's
 * block layer and monitors until `quit`, SIGINT or SIGTERM; resolves to the
 * exit code. `prog` starts the messages (the executable's own name for
 * blockemu-system-x86_64).
 */
export async function runSystem(args: readonly string[], prog = SYSTEM_PROG): Promise<number> {
  let plan;
  try {
    plan = planSystem(parseSystemArgs(args));
  } catch (err) {
    if (err instanceof ArgsError || err instanceof SystemOptionError) {
      process.stderr.write(`${prog}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  if (plan.probe) {
    process.stdout.write(await probeOutput(plan.probe, prog));
    return 0;
  }
  // qemu-system's stderr carries only its own messages, which harnesses compare as text (iotest 229 would see a job's
  // I/O error logged as JSON): blockemu's structured log is off here unless asked for.
  if (process.env.BLOCKEMU_LOG_LEVEL === undefined) setLogLevel('silent');
  const machine = new Machine(plan.machine, plan.startPaused, plan.incoming !== undefined);
  // drive_add reads its options as -drive does; ids and bus places are checked by the running machine.
  machine.planDrive = (opts) => {
    const planner = new DrivePlanner(boardBuses(machine.type));
    const step = planner.plan(planner.parse(opts));
    if ('invalid' in step) throw new Error(step.invalid);
    return step.plan;
  };
  // -loadvm runs once the monitors are up; their commands wait for it.
  let initialized!: () => void;
  if (plan.loadvm !== undefined) machine.initialized = new Promise<void>((r) => (initialized = r));
  let daemon: Daemon | undefined;
  let stopRequested: string | undefined;
  // QEMU's message and event for a signal (the sender's pid is not known to Node).
  const stop = (signal: NodeJS.Signals) => {
    process.stderr.write(`${prog}: terminating on signal ${signal === 'SIGINT' ? 2 : 15}\n`);
    machine.shutdown('host-signal');
    if (daemon) void daemon.shutdown(signal);
    else stopRequested = signal;
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  let qtest: QtestConnection | undefined;
  try {
    daemon = await Daemon.start({ monitors: plan.monitors, chardevs: plan.chardevs, setup: plan.setup, machine, makeParser: makeQmpParser, progName: prog, exitOnVerifyMismatch: true, printf: (text) => void process.stdout.write(text) });
    if (plan.qtest?.kind === 'socket') qtest = await QtestConnection.connect(plan.qtest.path);
  } catch (err) {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await daemon?.shutdown('failed');
    process.stderr.write(`${prog}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  // A failure once the monitors are up (-loadvm, -incoming): QEMU's error_fatal, the process ends after its teardown.
  const started = daemon;
  const failStarted = async (err: unknown): Promise<number> => {
    process.stderr.write(`${prog}: ${err instanceof Error ? err.message : String(err)}\n`);
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await started.shutdown('failed');
    qtest?.close();
    return 1;
  };
  if (plan.loadvm !== undefined) {
    // qmp_x_exit_preconfig's load_snapshot: after the monitors greeted, fatal (error_fatal) if it fails.
    const { loadSnapshotAll } = await import('../qmp/hmp/vm-snapshots.js');
    try {
      await loadSnapshotAll({ graph: daemon.graph, exports: daemon.exports, machine }, plan.loadvm);
      initialized();
    } catch (err) {
      return failStarted(err);
    }
  }
  if (plan.incoming !== undefined) {
    const migration = machine.migration!;
    // A destination whose stream fails ends, as QEMU does (process_incoming_migration_co's exit).
    migration.fatal = async (message) => {
      // A quit asked for (or being read) ends the process: QEMU's main loop has stopped, the migration coroutine never fails (iotest 145).
      await daemon!.monitorsIdle();
      if (machine.status === 'shutdown') return;
      process.stderr.write(`${prog}: ${message}\n`);
      void daemon!.shutdown('failed').finally(() => process.exit(1));
    };
    if (plan.incoming === 'defer') migration.deferred = true;
    else {
      try {
        await migration.listen(plan.incoming);
      } catch (err) {
        return failStarted(err);
      }
    }
  }
  if (stopRequested) void daemon.shutdown(stopRequested);
  // Nothing may be listening (no monitor at all), yet the machine runs until a signal, as QEMU's does.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  await daemon.whenExited();
  clearInterval(keepAlive);
  qtest?.close();
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  return 0;
}

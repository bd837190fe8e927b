import { unlink, writeFile } from 'node:fs/promises';
import type { Logger } from './log.js';
import { BlockGraph } from './blockdev/graph.js';
import type { BlockdevSpec } from './blockdev/open.js';
import { BlockError } from './image/errors.js';
import { BlockExports } from './export/exports.js';
import type { BlockExportOptions, NbdServerOptions } from './qmp/schema/block-export.js';
import type { Infer } from './qmp/schema/types.js';
import { logger, logs } from './log.js';
import { addJobCommands, jobEventListener } from './qmp/commands/jobs.js';
import type { ObjectOptions } from './qmp/schema/qom.js';
import { ObjectRegistry } from './objects/registry.js';
import { nodeEvent } from './qmp/commands/node-events.js';
import { FAULT_FIRED, type FaultOptions } from './qmp/schema/blockemu-faults.js';
import { DAEMON_EVENTS } from './qmp/schema/events.js';
import { QmpError, type QmpErrorClass } from './qmp/error.js';
import type { FaultFired } from './blockdev/faults/fault.js';
import type { BlockJob } from './jobs/block-job.js';
import type { Job } from './jobs/job.js';
import { loggingJobListener } from './jobs/job-log.js';
import { JobManager } from './jobs/manager.js';
import { addControlCommands } from './qmp/commands/control.js';
import type { QmpContext, VersionInfo } from './qmp/context.js';
import { CommandTable } from './qmp/dispatch.js';
import { COMMAND_MODULES, SYSTEM_COMMAND_MODULES } from './qmp/command-modules.js';
import type { EventDef } from './qmp/schema/command.js';
import { QmpServer } from './qmp/server.js';
import { type Monitor, QmpConnectedMonitor } from './qmp/connected-monitor.js';
import type { Machine, MachineEvent } from './machine/run-state.js';
import type { DrivePlan } from './machine/drive.js';
import type { DeviceSpec } from './machine/devices.js';
import { MACHINE_EVENTS } from './qmp/schema/run-state.js';
import { migrationEvent, migrationPassEvent } from './qmp/schema/migration.js';
import { Migration } from './machine/migration.js';
import { deviceTrayMovedEvent } from './qmp/schema/block-tray.js';
import { deviceDeletedEvent } from './qmp/schema/qdev.js';
import type { MonitorActivity, ParserFactory } from './qmp/session.js';
import { QmpRecorder, type RecordHeader } from './qmp/recorder.js';
import { EventThrottle } from './qmp/event-throttle.js';

/** A QMP monitor on a Unix socket (--chardev socket,… + --monitor chardev=…). */
export interface MonitorConfig {
  path: string;
  /**
   * Connect to `path` rather than listen on it (a chardev in client mode),
   * use stdin/stdout (`stdio`), or a connected socket inherited as `fd`
   * (`-chardev socket,fd=N`: python/qemu/machine passes one end of a socketpair).
   */
  connect?: 'socket' | 'stdio' | 'fd';
  fd?: number;
  /** The option that asked for the monitor ("-qmp unix:…"): QEMU's failures to open it start with it. */
  origin?: string;
  /** Socket file mode; QEMU leaves it to the umask, we default to 0600. */
  mode?: number;
  /** pretty=on: QMP messages indented over several lines (QEMU's -qmp-pretty). */
  pretty?: boolean;
  /** A human monitor (HMP, QEMU's readline mode) rather than QMP; on stdio or an inherited socket. */
  hmp?: boolean;
}

/**
 * A --blockdev, --nbd-server or --export option, validated: they take
 * effect in command-line order (a node before its export, the server
 * before its exports), as qemu-storage-daemon processes them.
 */
export type SetupStep = (
  | { option: 'blockdev'; arg: string; spec: BlockdevSpec }
  | { option: 'nbd-server'; arg: string; server: Infer<typeof NbdServerOptions> }
  | { option: 'export'; arg: string; export: Infer<typeof BlockExportOptions> }
  | { option: 'object'; arg: string; object: Infer<typeof ObjectOptions> }
  | { option: 'fault'; arg: string; fault: Infer<typeof FaultOptions> }
  | { option: 'drive'; arg: string; spelled: string; drive: DrivePlan }
  | { option: 'device'; arg: string; spelled: string; device: DeviceSpec }
  | InvalidStep
) & {
  /** How the option was written, when not `--option` (qemu-system's `-blockdev`). */
  spelled?: string;
};

/** An option whose argument did not parse: it fails with this message when its turn comes. */
export interface InvalidStep {
  option: 'blockdev' | 'nbd-server' | 'export' | 'object' | 'fault' | 'drive';
  arg: string;
  invalid: string;
}

export interface DaemonConfig {
  monitors: MonitorConfig[];
  /** The ids of the --chardev options (listed under /chardevs in the QOM tree). */
  chardevs?: string[];
  /** --blockdev, --nbd-server, --export, --object and --fault, carried out in order before the monitors listen. */
  setup?: SetupStep[];
  pidfile?: string;
  /** The clock jobs run on: real time (default), or virtual time that moves when every job waits on it (blockemu's --clock). */
  clock?: 'real' | 'virtual';
  makeParser: ParserFactory;
  /** A QMP traffic log of every monitor (blockemu's --record): the file and the header that says how to start the daemon again. */
  record?: { path: string; header: RecordHeader };
  log?: Logger;
  /**
   * Where the lines QEMU prints with error_report go (a close that could
   * not flush, bitmaps lost): stderr by default, prefixed with `progName`
   * outside a monitor command, as QEMU prefixes them.
   */
  errorReport?: (message: string) => void;
  /**
   * Where what QEMU prints with printf goes (the "Formatting …" line of an
   * image a command creates): the executables pass their stdout; by
   * default (an embedded daemon) nowhere.
   */
  printf?: (text: string) => void;
  /** The program name error_report lines start with (default 'blockemu'). */
  progName?: string;
  /**
   * A blkverify or quorum-blkverify mismatch ends the process with status 1
   * after printing it, as QEMU's does (`blockemu system`, a stand-in for a
   * VM the way QEMU's iotests expect it to behave). Without it (the
   * daemon) the mismatch is logged and the request fails.
   */
  exitOnVerifyMismatch?: boolean;
  /**
   * `blockemu system`: the machine whose run state the monitors report and
   * change. Its commands and events join the daemon's; `quit` announces
   * SHUTDOWN and the teardown runs as qemu-system's (jobs cancelled while
   * the monitors still hear of it).
   */
  machine?: Machine;
}

/** What query-version and the greeting report: the QEMU release whose behaviour we follow, and our own name. */
export const VERSION: VersionInfo = { qemu: { major: 7, minor: 2, micro: 0 }, package: 'blockemu 0.1.0' };

/** Unsent output (bytes) after which a QMP client that does not read is dropped. */
const MAX_PENDING_OUTPUT = 16 << 20;

/**
 * The composition root: the command table, the monitors, the pidfile, and
 * an orderly shutdown (stop accepting, close clients, remove the sockets
 * and the pidfile). Jobs and the block graph join here as they land.
 */
export class Daemon {
  private shuttingDown: Promise<void> | undefined;
  private blockLayerReleased: Promise<void> | undefined;
  private readonly exited: Promise<void>;
  private resolveExited!: () => void;
  readonly exports: BlockExports;

  private constructor(
    readonly monitors: Monitor[],
    readonly graph: BlockGraph,
    readonly jobs: JobManager,
    blockExports: BlockExports, // not `exports`: the bundle's CommonJS form reserves that name (build/bundle.ts)
    readonly objects: ObjectRegistry,
    private readonly pidfile: string | undefined,
    private readonly log: Logger,
    private readonly recorder: QmpRecorder | undefined,
    readonly machine: Machine | undefined,
    private readonly activity: MonitorActivity,
  ) {
    this.exports = blockExports;
    this.exited = new Promise((r) => (this.resolveExited = r));
  }

  /**
   * Resolves once no monitor command is running: QEMU's main loop runs one
   * callback at a time, so what fails outside a command (an incoming
   * migration's stream) comes after a command that began before it.
   */
  async monitorsIdle(): Promise<void> {
    // A human monitor's input that is there already (`echo quit | qemu-system …`) is read first in QEMU's main loop;
    // here its first read may come a little later: it is waited for, briefly.
    const first = this.monitors.flatMap((m) => (m.firstInput ? [m.firstInput] : []));
    if (first.length > 0) await Promise.race([Promise.all(first), new Promise((r) => setTimeout(r, 250).unref())]);
    // Idle for a moment in a row: the commands of one chunk of input run one after the other, with a turn between.
    for (let quiet = 0; quiet < 20; quiet = this.activity.commandsRunning > 0 ? 0 : quiet + 1) await new Promise((r) => setTimeout(r, 1));
  }

  static async start(config: DaemonConfig): Promise<Daemon> {
    const log = config.log ?? logger();
    const commands = new CommandTable<QmpContext>();
    addControlCommands(commands);
    addJobCommands(commands);
    // The other handlers (and the block layer behind them) load when first called.
    for (const m of COMMAND_MODULES) commands.addLazy(m.defs, m.load);
    const machine = config.machine;
    if (machine) for (const m of SYSTEM_COMMAND_MODULES) commands.addLazy(m.defs, m.load);
    const graph = new BlockGraph();
    const jobs = new JobManager(config.clock);
    graph.clock = jobs.clock;
    const objects = new ObjectRegistry(graph.throttleGroups);
    for (const id of config.chardevs ?? []) objects.addChardev(id);
    graph.secretBytes = (id) => objects.secretUtf8(id);
    graph.refuseAesEncryption = machine !== undefined;
    const events: readonly EventDef[] = machine ? [...MACHINE_EVENTS, deviceTrayMovedEvent, deviceDeletedEvent, migrationEvent, migrationPassEvent, ...DAEMON_EVENTS] : DAEMON_EVENTS;
    // Events go to every monitor of the daemon, which exists once the monitors do.
    const jobEvents = loggingJobListener(
      jobEventListener((name, data) => daemon?.emitEvent(name, data), () => jobs),
      log,
    );
    const servers: Monitor[] = [];
    let daemon: Daemon | undefined;
    // A connected monitor can take quit before start() has finished (the harness writes at once): it waits for the daemon.
    let started!: (d: Daemon) => void;
    const whenStarted = new Promise<Daemon>((r) => (started = r));
    if (machine) {
      // -incoming: what is opened from now until the migration completes is the source's, and stays inactive.
      graph.openInactive = machine.status === 'inmigrate';
      machine.migration = new Migration(machine, graph);
      machine.onEvent = (e) => daemon?.emitEvent(...machineEvent(e));
      machine.devices.graph = graph;
      // A soft cancel; the jobs end (with their events) before the device's DEVICE_DELETED, as in QEMU.
      machine.devices.onAutoDelete = async (node) => {
        const stop = async (j: Job) => {
          try {
            await j.cancel(false);
          } catch {
            return; // A job past cancelling (concluded, waiting for its dismiss) stays as it is.
          }
          if (j.autoDismiss) await j.removedPromise;
        };
        await Promise.all(jobs.list().filter((j) => j.usesNode(node)).map(stop));
      };
      machine.devices.onDrain = (node) => jobs.drainWithParents(node);
      machine.devices.onDeleted = (id, path) => daemon?.emitEvent('DEVICE_DELETED', id === undefined ? { path } : { device: id, path });
    }
    graph.backends.onTrayMoved = (b) => daemon?.emitEvent('DEVICE_TRAY_MOVED', { device: b.name, id: b.device?.id ?? b.device?.path ?? '', 'tray-open': b.trayOpen });
    const blockExports = new BlockExports(graph, (id) => daemon?.emitEvent('BLOCK_EXPORT_DELETED', { id }), log);
    blockExports.onBackendGone = (node) => jobs.drainWithParents(node);
    const monitorActivity: MonitorActivity = { commandsRunning: 0 };
    const prog = config.progName ?? 'blockemu';
    // QEMU's error_print_loc: the program's name only when no monitor command is running.
    const report = config.errorReport ?? ((m: string) => void process.stderr.write(monitorActivity.commandsRunning > 0 ? `${m}\n` : `${prog}: ${m}\n`));
    graph.onEvent = (e) => {
      if (e.kind === 'error-report') return report(e.message);
      // QEMU exits here (quorum's blkverify mode); a daemon serving others says so and fails the read instead.
      if (e.kind === 'verify-mismatch') {
        log.error({ node: e.node.nodeName, mismatch: e.message }, 'blkverify mismatch');
        if (config.exitOnVerifyMismatch) {
          process.stderr.write(`${e.message}\n`);
          process.exit(1);
        }
        return report(e.message);
      }
      // blkdebug's printf: QEMU's iotests run qemu-system under qtest, where blkdebug prints nothing.
      if (e.kind === 'debug-print') return;
      if (e.kind === 'close-failed') return log.warn({ node: e.node.nodeName, err: e.error }, 'closing a node failed');
      if (e.kind === 'image-corrupted') log.warn({ node: e.node.nodeName, corruption: e.message, fatal: e.fatal }, 'image corrupted');
      const { name, data } = nodeEvent(e, graph.backends.deviceName(e.node));
      daemon?.emitEvent(name, data);
    };
    wireFaults(graph, commands, log, (name, data) => daemon?.emitEvent(name, data));
    // A block job's progress may set off a job-progress crash on a node it uses.
    jobs.onProgress = (job) => {
      const nodes = (job as Partial<BlockJob>).nodes;
      if (nodes) graph.faults.jobProgress(job.id, (n) => nodes.has(n), job.progressCurrent);
    };
    for (const step of config.setup ?? []) {
      try {
        await runSetupStep(step, graph, blockExports, objects, machine);
      } catch (err) {
        await blockExports.close();
        await graph.closeAll();
        // error_report_err prints the hint lines after the message.
        const hint = err instanceof BlockError && err.hint !== undefined ? `\n${err.hint}` : '';
        const spelled = step.spelled ?? `--${step.option}`;
        // A device the board made for a drive fails with no option to name (QEMU's machine init).
        const where = spelled === '' ? '' : `${[spelled, step.arg].filter((x) => x !== '').join(' ')}: `;
        throw new Error(`${where}${err instanceof Error ? err.message : String(err)}${hint}`, { cause: err });
      }
    }
    let recorder: QmpRecorder | undefined;
    try {
      if (config.record) recorder = await QmpRecorder.open(config.record.path, config.record.header);
      for (const m of config.monitors) {
        const session = {
            commands,
            events,
            version: VERSION,
            capabilities: ['oob'],
            graph,
            jobs,
            jobEvents,
            exports: blockExports,
            objects,
            makeParser: config.makeParser,
            ...(machine ? { machine } : {}),
            ...(config.printf ? { printf: config.printf } : {}),
            started: whenStarted,
            quit: async () => {
              // The block layer's teardown and its events, then the reply; the monitors go after it. qemu-system
              // sends SHUTDOWN first (at once: a quit during start-up stops what the start would go on to, as
              // QEMU's main loop ends; iotest 145's incoming migration never fails); qemu-storage-daemon's reply
              // waits in its monitor until monitor_cleanup (tests/qsd-jobs: BLOCK_JOB_CANCELLED, BLOCK_EXPORT_DELETED
              // before quit's return).
              machine?.shutdown('host-qmp-quit');
              const d = daemon ?? (await whenStarted);
              // QEMU tears down after its main loop, outside any command: error_report lines get the program's prefix.
              monitorActivity.commandsRunning--;
              try {
                await d.releaseBlockLayer();
              } finally {
                monitorActivity.commandsRunning++;
              }
              // The reply goes out now; shutdown (the monitors, the objects, the pidfile) on the next turn.
              setImmediate(() => void d.shutdown('quit'));
            },
            log,
            activity: monitorActivity,
            maxPendingOutput: MAX_PENDING_OUTPUT,
            recorder,
            ...(m.pretty ? { pretty: true } : {}),
        };
        try {
          if (m.hmp) servers.push((await import('./qmp/hmp/monitor.js')).HmpMonitor.open(m.path, m.connect === 'fd' ? m.fd! : 'stdio', session));
          else if (m.connect === 'socket') servers.push(await QmpConnectedMonitor.connect(m.path, session));
          else if (m.connect === 'stdio') servers.push(QmpConnectedMonitor.stdio(session));
          else if (m.connect === 'fd') servers.push(QmpConnectedMonitor.fromFd(m.fd!, session));
          else servers.push(await QmpServer.listen(m.path, { ...session, mode: m.mode }));
        } catch (err) {
          if (m.origin === undefined || !(err instanceof Error)) throw err;
          throw new Error(`${m.origin}: ${err.message}`, { cause: err });
        }
      }
      if (config.pidfile) await writeFile(config.pidfile, `${process.pid}\n`);
    } catch (err) {
      await Promise.all(servers.map((s) => s.close()));
      await recorder?.close().catch(() => undefined);
      await blockExports.close();
      await graph.closeAll();
      throw err;
    }
    daemon = new Daemon(servers, graph, jobs, blockExports, objects, config.pidfile, log, recorder, machine, monitorActivity);
    started(daemon);
    log.info({ monitors: servers.map((s) => s.path) }, 'daemon started');
    return daemon;
  }

  /** Events QEMU's monitor sends at most once a second (quorum's) pass through here. */
  private readonly throttle = new EventThrottle((name, data) => this.broadcast(name, data));

  /** Sends an event to every negotiated client of every monitor (rate-limited as QEMU limits it). */
  emitEvent(name: string, data?: unknown): void {
    this.throttle.emit(name, data);
  }

  private broadcast(name: string, data: unknown): void {
    if (logs(this.log, 'trace')) this.log.trace({ event: name, data }, 'QMP event');
    const now = Math.round((performance.timeOrigin + performance.now()) * 1000);
    for (const m of this.monitors) m.broadcast(name, data, now);
  }

  /** Resolves when the daemon has shut down (by quit, a signal or shutdown()). */
  whenExited(): Promise<void> {
    return this.exited;
  }

  /**
   * Stops accepting, drops clients, cancels jobs, closes every node (each
   * stores its bitmaps and reports what it could not write), removes
   * sockets and the pidfile. Each step runs whatever the one before it met
   * (a failure is logged), so nothing is left behind. Idempotent; never
   * rejects.
   */
  shutdown(reason = 'shutdown'): Promise<void> {
    this.shuttingDown ??= (async () => {
      this.log.info({ reason }, 'daemon shutting down');
      this.throttle.close();
      // Held requests go first (stalls, blkdebug breakpoints): exports, jobs and nodes wait for their requests.
      this.graph.releaseHeldRequests();
      // qemu-system's order (qemu_cleanup) and qemu-storage-daemon's (the end of its main()) alike: the
      // whole block layer goes while the monitors still hear of it, every image flushed and closed.
      await this.releaseBlockLayer();
      await this.closeMonitors();
      await this.step('deleting the objects', () => this.objects.clear());
      if (this.pidfile) await this.step('removing the pidfile', () => unlink(this.pidfile!));
      this.log.info({ reason }, 'daemon shut down');
      this.resolveExited();
    })();
    return this.shuttingDown;
  }

  /**
   * The teardown of the block layer, before the monitors close:
   * exports closed (which drains: running jobs pause and resume), jobs
   * cancelled, nodes flushed and closed. Once only.
   */
  releaseBlockLayer(): Promise<void> {
    this.blockLayerReleased ??= (async () => {
      this.graph.releaseHeldRequests();
      await this.step('closing the exports', () => this.exports.close());
      this.jobs.drainAll();
      this.graph.drainAllForShutdown();
      await this.step('cancelling the jobs', () => this.jobs.cancelAll());
      await this.step('closing the nodes', () => this.graph.closeAll());
    })();
    return this.blockLayerReleased;
  }

  private async closeMonitors(): Promise<void> {
    await this.step('closing the monitors', () => Promise.all(this.monitors.map((m) => m.close())));
    if (this.recorder) await this.step('closing the QMP record', () => this.recorder!.close());
  }

  private async step(what: string, run: () => unknown): Promise<void> {
    try {
      await run();
    } catch (err) {
      this.log.error({ err }, `shutdown: ${what} failed`);
    }
  }
}

/**
 * Every fault that fires is logged (a latency at info, the others at
 * warn) and announced as __org.blockemu_FAULT_FIRED; a QMP command fault
 * answers the call through the command table's interceptor.
 */
function wireFaults(graph: BlockGraph, commands: CommandTable<QmpContext>, log: Logger, emit: (name: string, data: unknown) => void): void {
  graph.faults.onFired = (f: FaultFired) => {
    const line = { fault: f.id, type: f.type, node: f.node, command: f.command, job: f.job, progress: f.progress, iotype: f.iotype, offset: f.offset, length: f.length, errno: f.errno, hits: f.hits };
    if (f.type === 'latency') log.info(line, 'fault fired');
    else log.warn(line, f.type === 'crash' ? 'fault fired: crashing' : 'fault fired');
    emit(FAULT_FIRED.name, {
      id: f.id,
      type: f.type,
      ...(f.node !== undefined ? { 'node-name': f.node } : {}),
      ...(f.command !== undefined ? { command: f.command } : {}),
      ...(f.job !== undefined ? { job: f.job, progress: f.progress } : {}),
      ...(f.iotype !== undefined ? { iotype: f.iotype } : {}),
      ...(f.offset !== undefined ? { offset: f.offset } : {}),
      ...(f.length !== undefined ? { length: f.length } : {}),
      ...(f.errno !== undefined ? { errno: f.errno } : {}),
      hits: f.hits,
    });
  };
  commands.interceptor = (name) => {
    const e = graph.faults.commandFault(name);
    return e ? new QmpError(e.errorClass as QmpErrorClass, e.desc) : undefined;
  };
}

/** A machine's state change as its QMP event (qapi/run-state.json). */
function machineEvent(e: MachineEvent): [string, unknown?] {
  switch (e.kind) {
    case 'stop':
      return ['STOP'];
    case 'resume':
      return ['RESUME'];
    case 'powerdown':
      return ['POWERDOWN'];
    case 'reset':
    case 'shutdown':
      return [e.kind.toUpperCase(), { guest: false, reason: e.reason }];
    case 'migration':
      return ['MIGRATION', { status: e.status }];
    case 'migration-pass':
      return ['MIGRATION_PASS', { pass: e.pass }];
  }
}

/** One --blockdev, --nbd-server or --export option, carried out. */
async function runSetupStep(step: SetupStep, graph: BlockGraph, blockExports: BlockExports, objects: ObjectRegistry, machine: Machine | undefined): Promise<void> {
  if ('invalid' in step) throw new Error(step.invalid);
  switch (step.option) {
    case 'blockdev': {
      const { addBlockdev } = await import('./qmp/commands/blockdev.js');
      return addBlockdev({ graph }, step.spec);
    }
    case 'nbd-server': {
      const { nbdAddress } = await import('./qmp/commands/exports.js');
      const s = step.server;
      return blockExports.startNbdServer(nbdAddress(s.addr), { maxConnections: s['max-connections'], tlsCreds: s['tls-creds'] });
    }
    case 'export': {
      const { exportSpec } = await import('./qmp/commands/exports.js');
      await blockExports.add(exportSpec(step.export, (id) => objects.find(id)?.typeName === 'iothread'));
      return;
    }
    case 'object': {
      const { objectAddProperties } = await import('./qmp/commands/qom.js');
      await objects.add(step.object['qom-type'], step.object.id, objectAddProperties(step.object as Record<string, unknown>));
      return;
    }
    case 'fault': {
      const { addFault } = await import('./qmp/commands/faults.js');
      addFault(graph, step.fault);
      return;
    }
    case 'drive': {
      const { addDrive } = await import('./qmp/commands/drive.js');
      return addDrive(graph, step.drive, (text) => process.stderr.write(text));
    }
    case 'device': {
      if (!machine) throw new Error('devices need a machine (blockemu system)');
      const { plugDevice } = await import('./machine/hotplug.js');
      await plugDevice(machine.devices, graph, step.device);
      return;
    }
  }
}

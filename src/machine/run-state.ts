/**
 * The run state of the machine `blockemu system` stands in for
 * (softmmu/runstate.c): there is no guest, so the state only moves by the
 * monitor's stop/cont and the start (-S), and it announces each change as
 * QEMU does. Jobs and exports do not pause with it: in QEMU a stopped VM
 * stops its vCPUs, not the block layer's jobs.
 */
import { DeviceTree } from './devices.js';

export type RunStatus = 'prelaunch' | 'running' | 'paused' | 'shutdown' | 'inmigrate' | 'postmigrate' | 'finish-migrate';

/** Why the machine shut down or reset (QAPI ShutdownCause, the values blockemu can meet). */
export type ShutdownCause = 'host-qmp-quit' | 'host-qmp-system-reset' | 'host-signal';

export type MachineEvent =
  | { kind: 'stop' }
  | { kind: 'resume' }
  | { kind: 'reset'; reason: ShutdownCause }
  | { kind: 'powerdown' }
  | { kind: 'shutdown'; reason: ShutdownCause }
  | { kind: 'migration'; status: string }
  | { kind: 'migration-pass'; pass: number };

import type { DrivePlan } from './drive.js';
import type { Migration } from './migration.js';

export class Machine {
  status: RunStatus;
  /** Its devices (the command line's and device_add's). */
  readonly devices: DeviceTree;
  /** Whether the virtual clock has moved: it stands at 0 until the machine first runs. */
  clockStarted: boolean;
  /** Where state changes are announced (the daemon turns them into QMP events). */
  onEvent: (e: MachineEvent) => void = () => undefined;
  /**
   * Reads a drive_add's -drive options into a plan (throwing an Error with
   * QEMU's message); the composition root that parsed the command line's
   * -drive options provides it.
   */
  planDrive: ((opts: string) => DrivePlan) | undefined;
  /**
   * Resolves once the machine is set up (QEMU's main loop starts after
   * -loadvm): monitors greet before, but run no command until then.
   */
  initialized: Promise<void> = Promise.resolve();
  /** Its migration state (set up with the block layer it hands over). */
  migration: Migration | undefined;
  /** Whether the machine runs once an incoming migration completes (QEMU's autostart: no -S, or a `cont` meanwhile). */
  autostart: boolean;

  constructor(
    /** The -machine type (pc's alias resolved), as query-machines would name it. */
    readonly type: string,
    startPaused: boolean,
    /** -incoming: the machine waits for a migration (inmigrate) instead of starting. */
    incoming = false,
  ) {
    this.status = incoming ? 'inmigrate' : startPaused ? 'prelaunch' : 'running';
    this.clockStarted = !startPaused && !incoming;
    this.autostart = !startPaused;
    this.devices = new DeviceTree(type);
  }

  get running(): boolean {
    return this.status === 'running';
  }

  /** qmp_stop's vm_stop: only a running machine stops (and says so); from prelaunch it stays there; waiting for a migration, it will not start after it. */
  stop(): void {
    if (this.status === 'inmigrate') this.autostart = false;
    if (this.status !== 'running') return;
    this.status = 'paused';
    this.onEvent({ kind: 'stop' });
  }

  /** vm_start: a running machine is left alone, silently; one waiting for a migration starts after it (qmp_cont). */
  cont(): void {
    if (this.status === 'inmigrate') {
      this.autostart = true;
      return;
    }
    if (this.status === 'running') return;
    this.status = 'running';
    this.clockStarted = true;
    this.onEvent({ kind: 'resume' });
  }

  /** vm_stop_force_state(RUN_STATE_FINISH_MIGRATE): a running machine stops and says so, any other just changes state. */
  stopForMigration(): void {
    const wasRunning = this.status === 'running';
    this.status = 'finish-migrate';
    if (wasRunning) this.onEvent({ kind: 'stop' });
  }

  /** A run state set without an event (runstate_set): postmigrate, or the state a migration brought along. */
  setStatus(status: RunStatus): void {
    this.status = status;
  }

  /** A reset has no guest to restart: the state stays, the event goes out, and PCI devices waiting for their eject go. */
  reset(): void {
    this.onEvent({ kind: 'reset', reason: 'host-qmp-system-reset' });
    this.devices.reset();
  }

  /** The ACPI power button: with no guest to act on it, nothing follows the event. */
  powerdown(): void {
    this.onEvent({ kind: 'powerdown' });
  }

  /** The process is ending (quit or a signal): announced once. */
  shutdown(reason: ShutdownCause): void {
    if (this.status === 'shutdown') return;
    this.status = 'shutdown';
    this.onEvent({ kind: 'shutdown', reason });
  }
}

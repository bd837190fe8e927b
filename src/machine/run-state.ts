/**
 * The run state of the machine `blockemu system` stands in for
 * (softmmu/runstate.c): there is no guest, so the state only moves by the
 * monitor's stop/cont and the start (-S), and it announces each change as
 * QEMU does. Jobs and exports do not pause with it: in QEMU a stopped VM
 * stops its vCPUs, not the block layer's jobs.
 */
import { DeviceTree } from './devices.js';

export type RunStatus = 'prelaunch' | 'running' | 'paused' | 'shutdown';

/** Why the machine shut down or reset (QAPI ShutdownCause, the values blockemu can meet). */
export type ShutdownCause = 'host-qmp-quit' | 'host-qmp-system-reset' | 'host-signal';

export type MachineEvent =
  | { kind: 'stop' }
  | { kind: 'resume' }
  | { kind: 'reset'; reason: ShutdownCause }
  | { kind: 'powerdown' }
  | { kind: 'shutdown'; reason: ShutdownCause };

import type { DrivePlan } from './drive.js';

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

  constructor(
    /** The -machine type (pc's alias resolved), as query-machines would name it. */
    readonly type: string,
    startPaused: boolean,
  ) {
    this.status = startPaused ? 'prelaunch' : 'running';
    this.clockStarted = !startPaused;
    this.devices = new DeviceTree(type);
  }

  get running(): boolean {
    return this.status === 'running';
  }

  /** vm_stop: only a running machine stops (and says so); from prelaunch it stays there. */
  stop(): void {
    if (this.status !== 'running') return;
    this.status = 'paused';
    this.onEvent({ kind: 'stop' });
  }

  /** vm_start: a running machine is left alone, silently. */
  cont(): void {
    if (this.status === 'running') return;
    this.status = 'running';
    this.clockStarted = true;
    this.onEvent({ kind: 'resume' });
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

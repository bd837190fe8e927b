/** The parts of qapi/run-state.json and qapi/misc.json a machine without a guest serves (`blockemu system` only). */
import { command, event } from './command.js';
import { bool, enumType, struct } from './types.js';

export const RunState = enumType('RunState', [
  'debug',
  'inmigrate',
  'internal-error',
  'io-error',
  'paused',
  'postmigrate',
  'prelaunch',
  'finish-migrate',
  'restore-vm',
  'running',
  'save-vm',
  'shutdown',
  'suspended',
  'watchdog',
  'guest-panicked',
  'colo',
]);

export const ShutdownCause = enumType('ShutdownCause', [
  'none',
  'host-error',
  'host-qmp-quit',
  'host-qmp-system-reset',
  'host-signal',
  'host-ui',
  'guest-shutdown',
  'guest-reset',
  'guest-panic',
  'subsystem-reset',
  'snapshot-load',
]);

export const StatusInfo = struct('StatusInfo', { running: bool, singlestep: bool, status: RunState });

export const queryStatus = command('query-status', { returns: StatusInfo, allowPreconfig: true });
export const stop = command('stop');
export const cont = command('cont');
export const systemReset = command('system_reset');
export const systemPowerdown = command('system_powerdown');

export const RUN_STATE_COMMANDS = [queryStatus, stop, cont, systemReset, systemPowerdown] as const;

export const shutdownEvent = event('SHUTDOWN', { guest: bool, reason: ShutdownCause });
export const powerdownEvent = event('POWERDOWN');
export const resetEvent = event('RESET', { guest: bool, reason: ShutdownCause });
export const stopEvent = event('STOP');
export const resumeEvent = event('RESUME');

/** The events only a machine emits, in qapi/run-state.json's order. */
export const MACHINE_EVENTS = [shutdownEvent, powerdownEvent, resetEvent, stopEvent, resumeEvent] as const;

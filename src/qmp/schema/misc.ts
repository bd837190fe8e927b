/** qapi/misc.json: the parts we serve. */
import { command } from './command.js';
import { int, str } from './types.js';

/**
 * Not in qemu-storage-daemon 7.2 (the system emulator has it): served
 * because QEMU's iotests and many harnesses write to a node while a job
 * runs with `human-monitor-command "qemu-io NODE \"write …\""`.
 */
export const humanMonitorCommand = command('human-monitor-command', { args: { 'command-line': str, '*cpu-index': int }, returns: str });

export const MISC_COMMANDS = [humanMonitorCommand] as const;

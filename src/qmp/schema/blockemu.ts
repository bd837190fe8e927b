/**
 * blockemu's own QMP extensions, named by QAPI's rule for downstream
 * extensions (`__RFQDN_name`), so they can never clash with QEMU's names.
 */
import { command } from './command.js';
import { enumType, int, struct } from './types.js';

export const ClockMode = enumType('__org.blockemu_ClockMode', ['real', 'virtual']);
export const ClockInfo = struct('__org.blockemu_ClockInfo', { mode: ClockMode, ns: int });

/** Moves the virtual clock forward by `ns` nanoseconds (jobs' sleeps and rate limits run on it). */
export const clockAdvance = command('__org.blockemu_clock-advance', { args: { ns: int } });
export const queryClock = command('__org.blockemu_query-clock', { returns: ClockInfo });

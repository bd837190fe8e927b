/**
 * Every event the daemon declares (query-qmp-schema) and may emit, in
 * introspection order; the typed client's event types come from this list.
 */
import { BLOCK_CORE_EVENTS } from './block-core.js';
import { BLOCK_EXPORT_EVENTS } from './block-export.js';
import { FAULT_FIRED } from './blockemu-faults.js';
import { JOB_EVENTS } from './job.js';

export const DAEMON_EVENTS = [...JOB_EVENTS, ...BLOCK_CORE_EVENTS, ...BLOCK_EXPORT_EVENTS, FAULT_FIRED] as const;

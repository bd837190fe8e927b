/**
 * blockemu's fault scenarios (README "Fault scenarios"): faults armed on a
 * node's request path or on a QMP command by plain words, named by QAPI's
 * rule for downstream extensions. The same table parses QMP arguments,
 * `--fault` (keyval) and startDaemon's `faults`.
 */
import { command, event } from './command.js';
import { array, bool, enumType, size, str, struct, uint32, uint8, union } from './types.js';

export const FaultType = enumType('__org.blockemu_FaultType', ['error', 'enospc-after', 'latency', 'stall', 'torn-write', 'crash']);
export const FaultIoType = enumType('__org.blockemu_FaultIoType', ['read', 'write', 'write-zeroes', 'discard', 'flush', 'any']);
/** The errno names a fault can fail a request with (each reported with glibc's text, as blkdebug's). */
export const FaultErrno = enumType('__org.blockemu_FaultErrno', [
  'EIO',
  'ENOSPC',
  'EPERM',
  'EACCES',
  'EINVAL',
  'EROFS',
  'EDQUOT',
  'EFBIG',
  'ENOMEDIUM',
  'ENOTSUP',
  'ETIMEDOUT',
  'EAGAIN',
  'EBUSY',
  'ENOMEM',
  'ECANCELED',
]);
export const FaultCrashPoint = enumType('__org.blockemu_FaultCrashPoint', ['before-request', 'after-request', 'after-bytes-written', 'job-progress']);

/** Which requests a fault takes (every kind but enospc-after has these). */
const match = { '*nth': uint32, '*count': uint32, '*offset': size, '*length': size };

export const FaultOptions = union(
  '__org.blockemu_FaultOptions',
  { 'node-name': str, '*id': str, type: FaultType },
  'type',
  {
    error: struct('__org.blockemu_FaultOptionsError', { '*iotype': FaultIoType, errno: FaultErrno, ...match }),
    'enospc-after': struct('__org.blockemu_FaultOptionsEnospcAfter', { bytes: size }),
    latency: struct('__org.blockemu_FaultOptionsLatency', { '*iotype': FaultIoType, ms: uint32, ...match }),
    stall: struct('__org.blockemu_FaultOptionsStall', { '*iotype': FaultIoType, ...match }),
    'torn-write': struct('__org.blockemu_FaultOptionsTornWrite', { bytes: size, '*errno': FaultErrno, ...match }),
    crash: struct('__org.blockemu_FaultOptionsCrash', { point: FaultCrashPoint, '*status': uint8, '*bytes': size, '*iotype': FaultIoType, ...match }),
  },
);

export const QmpErrorClass = enumType('__org.blockemu_QmpErrorClass', ['GenericError', 'CommandNotFound', 'DeviceNotActive', 'DeviceNotFound', 'KVMMissingCap']);

export const FaultInfo = struct('__org.blockemu_FaultInfo', {
  id: str,
  /** A node fault's type, or 'qmp-error'. */
  type: str,
  '*node-name': str,
  '*command': str,
  matched: size,
  hits: size,
  spent: bool,
  '*waiting': size,
});

/** Arms a fault on a node; returns its id. */
export const faultAdd = command('__org.blockemu_fault-add', { args: FaultOptions, returns: struct('__org.blockemu_FaultId', { id: str }) });
export const faultRemove = command('__org.blockemu_fault-remove', { args: { id: str } });
export const faultRelease = command('__org.blockemu_fault-release', { args: { id: str } });
export const qmpFaultAdd = command('__org.blockemu_qmp-fault-add', {
  args: { '*id': str, command: str, '*class': QmpErrorClass, desc: str, '*count': uint32 },
  returns: struct('__org.blockemu_QmpFaultId', { id: str }),
});
export const queryFaults = command('__org.blockemu_query-faults', { returns: array(FaultInfo) });

/** Sent when a fault fires (a crash's never leaves: the process is gone first; the log line does). */
export const FAULT_FIRED = event('__org.blockemu_FAULT_FIRED', {
  id: str,
  type: str,
  '*node-name': str,
  '*command': str,
  '*job': str,
  '*progress': size,
  '*iotype': str,
  '*offset': size,
  '*length': size,
  '*errno': str,
  hits: size,
});

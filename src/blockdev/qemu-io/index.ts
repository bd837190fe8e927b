/** qemu-io's command interpreter (a subset), for `blockemu io` and the monitor's "qemu-io" command. */
export { COMMANDS, QemuIoSession, type QemuIoResult, runQemuIoCommand, type SessionHost } from './interpreter.js';
export type { InterpreterOptions, OpenRequest, Output, OutputChunk } from './command.js';
export type { DebugControl, IoExtent, QemuIoTarget } from './target.js';
export { backendTarget, type BackendTargetOptions, debugControl, findDebugNode } from './backend-target.js';

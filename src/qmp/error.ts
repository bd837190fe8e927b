import { BlockError, type QmpErrorClass } from '../image/errors.js';

export type { QmpErrorClass };

/**
 * An error as QMP reports it: a QAPI error class and QEMU's description
 * text. A client's error also names the command that failed (its message
 * is then `command: desc`); the daemon's own have no command.
 */
export class QmpError extends Error {
  constructor(
    readonly qmpClass: QmpErrorClass,
    readonly desc: string,
    readonly command?: string,
  ) {
    super(command === undefined ? desc : `${command}: ${desc}`);
    this.name = 'QmpError';
  }
}

/**
 * The one place where a failure becomes a QMP error: typed domain errors
 * keep their class and message; anything else is a bug, reported as a
 * GenericError that says so rather than taking the daemon down.
 */
export function toQmpError(err: unknown): QmpError {
  if (err instanceof QmpError) return err;
  if (err instanceof BlockError) return new QmpError(err.qmpClass, err.message);
  const msg = err instanceof Error ? err.message : String(err);
  return new QmpError('GenericError', `internal error: ${msg}`);
}

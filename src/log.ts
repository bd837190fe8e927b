import { createRequire } from 'node:module';
import type { Logger as PinoLogger } from 'pino';

/**
 * What blockemu logs through: pino's calls (a pino logger is one). The
 * root logger loads pino only when a line at an enabled level is first
 * written — with the default level (warn) a daemon that has nothing to
 * say never loads it, which saves its start-up some thirty modules.
 */
export interface Logger {
  level: string;
  fatal(obj: unknown, msg?: string): void;
  error(obj: unknown, msg?: string): void;
  warn(obj: unknown, msg?: string): void;
  info(obj: unknown, msg?: string): void;
  debug(obj: unknown, msg?: string): void;
  trace(obj: unknown, msg?: string): void;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
type Level = Exclude<(typeof LOG_LEVELS)[number], 'silent'>;
const VALUES: Record<string, number> = { fatal: 60, error: 50, warn: 40, info: 30, debug: 20, trace: 10, silent: Infinity };

/** pino is CommonJS: loaded synchronously, the first time a line is written. */
const load = createRequire(import.meta.url);

/** Structured logs go to stderr so stdout stays for command output. */
export function createLogger(level: string = process.env.BLOCKEMU_LOG_LEVEL ?? 'warn'): PinoLogger {
  const { pino } = load('pino') as typeof import('pino');
  return pino({ name: 'blockemu', level }, pino.destination({ fd: 2, sync: true }));
}

class LazyLogger implements Logger {
  private real: PinoLogger | undefined;
  constructor(private current: string) {}
  get level(): string {
    return this.current;
  }
  set level(level: string) {
    this.current = level;
    if (this.real) this.real.level = level;
  }
  private write(level: Level, obj: unknown, msg?: string): void {
    if (VALUES[level]! < (VALUES[this.current] ?? VALUES['warn']!)) return;
    this.real ??= createLogger(this.current);
    this.real[level](obj as object, msg);
  }
  fatal(obj: unknown, msg?: string): void {
    this.write('fatal', obj, msg);
  }
  error(obj: unknown, msg?: string): void {
    this.write('error', obj, msg);
  }
  warn(obj: unknown, msg?: string): void {
    this.write('warn', obj, msg);
  }
  info(obj: unknown, msg?: string): void {
    this.write('info', obj, msg);
  }
  debug(obj: unknown, msg?: string): void {
    this.write('debug', obj, msg);
  }
  trace(obj: unknown, msg?: string): void {
    this.write('trace', obj, msg);
  }
}

/** Whether a line at `level` would be written: callers skip building costly fields for lines nobody reads. */
export function logs(log: Logger, level: Level): boolean {
  return VALUES[level]! >= (VALUES[log.level] ?? VALUES['warn']!);
}

let rootLogger: Logger | undefined;
export function logger(): Logger {
  rootLogger ??= new LazyLogger(process.env.BLOCKEMU_LOG_LEVEL ?? 'warn');
  return rootLogger;
}
export function setLogLevel(level: string): void {
  logger().level = level;
}

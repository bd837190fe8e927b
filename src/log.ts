import { pino, type Logger } from 'pino';

/** Structured logs go to stderr so stdout stays for command output. */
export function createLogger(level: string = process.env.BLOCKEMU_LOG_LEVEL ?? 'warn'): Logger {
  return pino({ name: 'blockemu', level }, pino.destination({ fd: 2, sync: true }));
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

let rootLogger: Logger | undefined;
export function logger(): Logger {
  rootLogger ??= createLogger();
  return rootLogger;
}
export function setLogLevel(level: string): void {
  logger().level = level;
}

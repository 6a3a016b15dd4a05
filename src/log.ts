import pino, { Logger } from 'pino';

/** Structured logs to stderr (stdout belongs to the console adapter). */
export function createLogger(level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { app: 'etcd-medic' } }, pino.destination(2));
}

export type { Logger };

import pino, { Logger } from 'pino';

/** Structured logs to stderr (stdout belongs to the console adapter). */
export function createLogger(level: string): Logger {
  return pino({ level, base: { app: 'etcd-medic' } }, pino.destination(2));
}

export type { Logger };

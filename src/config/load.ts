import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { ZodError } from 'zod';
import { configSchema, MedicConfig } from './schema';
import { MedicError } from '../engine/errors';

/** Parse and validate clusters.yaml text; throws CONFIG_INVALID naming each bad field. */
export function parseConfig(text: string, source = 'config'): MedicConfig {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (e) {
    throw new MedicError('CONFIG_INVALID', `${source}: not valid YAML: ${(e as Error).message}`);
  }
  let cfg: MedicConfig;
  try {
    cfg = configSchema.parse(raw);
  } catch (e) {
    if (e instanceof ZodError) throw new MedicError('CONFIG_INVALID', `${source}: ${formatZod(e, raw)}`);
    throw e;
  }
  checkUnique(cfg, source);
  return cfg;
}

export function loadConfig(path: string): MedicConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new MedicError('CONFIG_INVALID', `cannot read config ${path}: ${(e as Error).message} (set MEDIC_CONFIG)`);
  }
  return parseConfig(text, path);
}

/** Paths like clusters[0](lab).nodes[2](node3).ssh.hostKey, so the field is found at once. */
function formatZod(e: ZodError, raw: unknown): string {
  return e.issues.map((i) => `${fieldPath(i.path, raw)}: ${i.message}`).join('; ');
}

function fieldPath(path: (string | number)[], raw: unknown): string {
  let cur: unknown = raw;
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') {
      out += `[${p}]`;
      cur = Array.isArray(cur) ? cur[p] : undefined;
      const n = cur && typeof cur === 'object' ? (cur as { name?: unknown }).name : undefined;
      if (typeof n === 'string') out += `(${n})`;
    } else {
      out += out ? `.${p}` : p;
      cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[p] : undefined;
    }
  }
  return out || '(top level)';
}

function checkUnique(cfg: MedicConfig, source: string): void {
  const seen = new Set<string>();
  for (const c of cfg.clusters) {
    if (seen.has(c.name)) throw new MedicError('CONFIG_INVALID', `${source}: clusters: name "${c.name}" appears twice`);
    seen.add(c.name);
    const nodes = new Set<string>();
    for (const n of c.nodes) {
      if (nodes.has(n.name)) throw new MedicError('CONFIG_INVALID', `${source}: clusters(${c.name}).nodes: name "${n.name}" appears twice`);
      nodes.add(n.name);
    }
  }
}

import type { MedicConfig, ClusterConfig } from '../config/schema';
import { CommandDef, usage } from './command';
import { MedicError } from './errors';
import { isSnapshotId } from '../snapshot/store';

/** Longest command line accepted; anything longer is refused before it is read further. */
export const MAX_INPUT_CHARS = 300;
/** Every token must match this: no shell metacharacters, no whitespace tricks, ASCII only. */
const TOKEN_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export interface Parsed {
  command: CommandDef;
  args: Record<string, string>;
  cluster?: ClusterConfig;
}

/**
 * Turn chat text into a command and validated arguments. Nothing from chat is used
 * further unless it matched a strict pattern and, for clusters and nodes, the inventory.
 */
export function parseInvocation(text: string, commands: readonly CommandDef[], config: MedicConfig): Parsed {
  if (text.length > MAX_INPUT_CHARS) {
    throw new MedicError('BAD_INPUT', `input is ${text.length} characters long; commands are at most ${MAX_INPUT_CHARS}. Try /etcd help`);
  }
  const raw = text.trim().split(/[ \t]+/).filter((t) => t.length > 0);
  if (raw.length === 0) return { command: mustFind('help', commands), args: {} };
  // "--mode all" / "--mode=all": named arguments, taken out before the positional ones.
  const named = new Map<string, string>();
  const tokens: string[] = [];
  for (let i = 0; i < raw.length; i++) {
    const m = /^--([a-z][a-z-]{0,30})(?:=(.*))?$/.exec(raw[i]);
    if (!m) { tokens.push(raw[i]); continue; }
    const value = m[2] ?? raw[++i];
    if (value === undefined) throw new MedicError('BAD_INPUT', `--${m[1]} needs a value. Try /etcd help`);
    checkToken(value);
    named.set(m[1], value);
  }
  for (const t of tokens) checkToken(t);
  if (tokens.length === 0) throw new MedicError('BAD_INPUT', 'options without a command. Try /etcd help');

  // Two-word commands first ("snapshot save"), then one-word ones.
  const pair = tokens.length > 1 ? `${tokens[0]} ${tokens[1]}`.toLowerCase() : undefined;
  const twoWord = pair ? commands.find((c) => c.id === pair || c.aliases?.includes(pair)) : undefined;
  const [word, ...rest] = twoWord ? [twoWord.id, ...tokens.slice(2)] : tokens;
  const command = twoWord ?? commands.find((c) => c.id === word.toLowerCase());
  if (!command) {
    throw new MedicError('UNKNOWN_COMMAND', `unknown command '${word}': commands are ${commands.map((c) => c.id).join(', ')}. Try /etcd help`);
  }
  for (const name of named.keys()) {
    if (!command.args.some((a) => a.name === name)) {
      throw new MedicError('BAD_INPUT', `${command.id} has no option --${name}: usage ${usage(command)}`);
    }
  }
  // Named values take their argument's place; positional ones fill the rest in order.
  const positional = [...rest];
  const ordered = command.args.map((a) => (named.has(a.name) ? named.get(a.name) : positional.shift()));
  if (positional.length > 0) {
    throw new MedicError('BAD_INPUT', `too many arguments for ${command.id}: usage ${usage(command)}`);
  }
  const args: Record<string, string> = {};
  let cluster: ClusterConfig | undefined;
  command.args.forEach((spec, i) => {
    const value = ordered[i] ?? spec.default;
    if (value === undefined && spec.optional) return;
    if (value === undefined) {
      const hint = spec.kind === 'cluster' ? `; known clusters are ${config.clusters.map((c) => c.name).join(', ')}` : '';
      throw new MedicError('BAD_INPUT', `missing <${spec.name}>: usage ${usage(command)}${hint}`);
    }
    switch (spec.kind) {
      case 'cluster': {
        cluster = config.clusters.find((c) => c.name === value);
        if (!cluster) {
          throw new MedicError('UNKNOWN_CLUSTER', `unknown cluster '${value}': known clusters are ${config.clusters.map((c) => c.name).join(', ')}`);
        }
        args[spec.name] = cluster.name;
        break;
      }
      case 'node': {
        if (!cluster) throw new Error(`command ${command.id}: a node argument needs a cluster argument before it`);
        const node = cluster.nodes.find((n) => n.name === value);
        if (!node) {
          throw new MedicError('UNKNOWN_NODE', `unknown node '${value}' in cluster ${cluster.name}: its nodes are ${cluster.nodes.map((n) => n.name).join(', ')}`);
        }
        args[spec.name] = node.name;
        break;
      }
      case 'member': {
        if (!cluster) throw new Error(`command ${command.id}: a member argument needs a cluster argument before it`);
        const node = cluster.nodes.find((n) => n.name === value);
        if (node) args[spec.name] = node.name;
        else if (/^[0-9a-f]{1,16}$/.test(value.toLowerCase())) args[spec.name] = value.toLowerCase();
        else {
          throw new MedicError('UNKNOWN_NODE', `'${value}' is neither a node of ${cluster.name} (${cluster.nodes.map((n) => n.name).join(', ')}) nor a member id (hex, from /etcd status)`);
        }
        break;
      }
      case 'job': {
        if (!/^[a-z0-9][a-z0-9-]{0,40}$/.test(value)) throw new MedicError('BAD_INPUT', `<${spec.name}> must be a job id as /etcd jobs prints it, not '${value}'`);
        args[spec.name] = value;
        break;
      }
      case 'snapshot': {
        if (!isSnapshotId(value)) throw new MedicError('BAD_INPUT', `<${spec.name}> must be a snapshot id as /etcd snapshot list prints it, not '${value}'`);
        args[spec.name] = value;
        break;
      }
      case 'number': {
        const n = Number(value);
        if (!/^\d{1,6}$/.test(value) || n < spec.min || n > spec.max) throw new MedicError('BAD_INPUT', `<${spec.name}> must be a number from ${spec.min} to ${spec.max}, not '${value}'`);
        args[spec.name] = String(n);
        break;
      }
      case 'choice': {
        const choice = spec.choices.find((c) => c === value.toLowerCase());
        if (!choice) throw new MedicError('BAD_INPUT', `<${spec.name}> must be one of ${spec.choices.join(', ')}, not '${value}'`);
        args[spec.name] = choice;
        break;
      }
    }
  });
  return { command, args, cluster };
}

function checkToken(t: string): void {
  if (TOKEN_PATTERN.test(t)) return;
  // Say what is wrong without echoing arbitrary bytes back verbatim.
  const shown = JSON.stringify(t.length > 40 ? `${t.slice(0, 40)}…` : t);
  throw new MedicError(
    'BAD_INPUT',
    `argument ${shown} is not allowed: arguments are names of letters, digits, '.', '_' and '-' (at most 63 characters), such as a cluster or node name. Try /etcd help`,
  );
}

function mustFind(id: string, commands: readonly CommandDef[]): CommandDef {
  const c = commands.find((x) => x.id === id);
  if (!c) throw new Error(`no ${id} command registered`);
  return c;
}


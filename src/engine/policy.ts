import type { ClusterConfig } from '../config/schema';
import type { Risk } from './command';
import { MedicError } from './errors';
import type { Origin } from './types';

/** Is this principal list matched by the user (or one of the user groups they belong to)? */
export function matches(principals: readonly string[], user: string, groups: readonly string[] = []): boolean {
  return principals.some((p) => p === '*' || p === user || groups.includes(p));
}

/**
 * Refuse requests from a channel not allowed for the cluster, or from a user not allowed
 * to request commands of this risk. Throws; returns nothing when allowed.
 */
export function checkRequest(cluster: ClusterConfig, risk: Risk, origin: Origin): void {
  if (!cluster.channels.includes(origin.channel)) {
    throw new MedicError(
      'CHANNEL_NOT_ALLOWED',
      `cluster ${cluster.name} can't be acted on from this channel (${origin.channel}); allowed: ${cluster.channels.filter((c) => c !== 'console').map((c) => `<#${c}>`).join(', ') || 'the console'}`,
    );
  }
  const rule = cluster.access[risk];
  if (!matches(rule.requesters, origin.user, origin.groups)) {
    throw new MedicError('NOT_PERMITTED', `you may not request ${risk} commands on ${cluster.name}; ask someone listed under access.${risk}.requesters in clusters.yaml`);
  }
}

/**
 * The clusters a requester may read from this channel (/etcd status all), in configuration
 * order, and how many others are configured but not shown here.
 */
export function readableClusters(clusters: readonly ClusterConfig[], origin: Origin): { clusters: ClusterConfig[]; hidden: number } {
  const shown = clusters.filter((c) => c.channels.includes(origin.channel) && matches(c.access.read.requesters, origin.user, origin.groups));
  return { clusters: shown, hidden: clusters.length - shown.length };
}

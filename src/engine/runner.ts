import type { ClusterConfig, MedicConfig } from '../config/schema';
import type { ClusterSnapshot } from '../exec/types';
import type { CommandDef, RunContext } from './command';
import type { AuditLog } from '../audit/audit-log';
import { describeError, isMedicError } from './errors';
import { errorReport, Report } from './report';
import { readableClusters } from './policy';
import type { JobRequest } from './types';

export interface RunnerDeps {
  config: MedicConfig;
  commands: readonly CommandDef[];
  probe(cluster: ClusterConfig): Promise<ClusterSnapshot>;
  /** For read commands that show the trail (/etcd audit). */
  audit?: AuditLog;
  /** For /etcd jobs. */
  jobs?: RunContext['jobs'];
  /** For /etcd logs. */
  withNode?: RunContext['withNode'];
  snapshots?: RunContext['snapshots'];
  openResources?: RunContext['openResources'];
  memory?: RunContext['memory'];
}

/**
 * Runs a queued job in a worker and always produces a Report: a failure becomes a
 * report that says what went wrong, so the requester never meets silence.
 */
export function createJobRunner(deps: RunnerDeps) {
  return {
    async run(job: JobRequest, jobId: string): Promise<Report> {
      const command = deps.commands.find((c) => c.id === job.command);
      const title = `etcd ${job.command} — ${job.cluster ?? (command?.fleet ? 'every cluster' : '?')}`;
      const base = {
        config: deps.config, args: job.args, origin: job.origin, jobId, probe: deps.probe, audit: deps.audit, jobs: deps.jobs, withNode: deps.withNode, snapshots: deps.snapshots, openResources: deps.openResources, memory: deps.memory,
      };
      if (!command?.execute && !command?.fleet) return errorReport(title, `this worker does not know the command '${job.command}' (is it running an older version?)`);
      // A fleet command's clusters are judged again here: this worker's configuration is the one that counts.
      const cluster = command.fleet ? undefined : deps.config.clusters.find((c) => c.name === job.cluster);
      if (command.execute && !cluster) return errorReport(title, `cluster '${job.cluster}' is no longer in this worker's configuration`, ['/etcd clusters']);
      try {
        return command.fleet
          ? await command.fleet({ ...base, ...readableClusters(deps.config.clusters, job.origin) })
          : await command.execute!({ ...base, cluster: cluster! });
      } catch (e) {
        const code = isMedicError(e) ? ` [${e.code}]` : '';
        return errorReport(title, `${job.command} failed${code}: ${describeError(e)}`);
      }
    },
  };
}

export type JobRunner = ReturnType<typeof createJobRunner>;

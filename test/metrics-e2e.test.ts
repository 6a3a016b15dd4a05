/**
 * A real Prometheus scrapes the bot's /metrics while an engineer asks for status and
 * replaces a wiped member (signed Slack requests, a real worker, the lab); its query API
 * then holds what an operator would graph and alert on: the cluster's verdict going
 * from degraded to healthy, every step's duration by action, the job's outcome, the
 * approval wait, each node's probe latency, and the queue.
 */
import { ensureLabHealthy, endpointHealth, labNode, labSh, pollUntil } from './support/lab';
import { Harness, LAB_CHANNEL, startHarness } from './support/harness';
import { click, threadText, waitPlanMessage } from './support/plans';
import { Prometheus, startPrometheus } from './support/prometheus';

const ALICE = 'U0ALICE';
const BOB = 'U0BOB';

describe('metrics scraped by a real Prometheus (lab)', () => {
  let h: Harness;
  let prom: Prometheus;

  beforeAll(async () => {
    await ensureLabHealthy();
    h = await startHarness({
      ops: { port: 0, host: '127.0.0.1' },
      mutateConfig: (c) => { c.clusters.find((x) => x.name === 'lab')!.access.destructive.approvers = [BOB]; },
    });
    prom = await startPrometheus([new URL(h.medic.opsUrl!).host]);
  });
  afterAll(async () => {
    await prom?.stop();
    await h?.stop();
    await ensureLabHealthy();
  });

  /** Polls a PromQL query until `ok` holds for its result (Prometheus scrapes every second). */
  async function until(promql: string, ok: (r: Awaited<ReturnType<Prometheus['query']>>) => boolean, what: string) {
    try {
      return (await pollUntil(what, async () => { const r = await prom.query(promql); return ok(r) ? r : undefined; }, 30_000, 500))!;
    } catch (e) {
      throw new Error(`${(e as Error).message}\nlast answer to ${promql}: ${JSON.stringify(await prom.query(promql).catch(String))}\nprometheus log:\n${prom.log()}`);
    }
  }

  it('the scrape target is up; status and a replace-member show up as the series an operator watches', async () => {
    await until('up{job="etcd-medic"}', (r) => r.length === 1 && r[0].value === 1, 'the bot scraped');
    await until('medic_process_resident_memory_bytes', (r) => r.length === 1 && r[0].value > 0, 'process metrics');

    await labSh('wipe-data', 'node3');
    await pollUntil('node3 unhealthy', async () => (await endpointHealth())[labNode('node3').clientUrl] === false, 60_000, 500);
    await h.slash('status lab', { user: ALICE });
    expect((await h.nextMessage(/etcd status — lab/)).blocks).toMatch(/degraded: 2\/3 voting members healthy/);
    await until('medic_cluster_verdict{cluster="lab",verdict="degraded"}', (r) => r[0]?.value === 1, 'verdict degraded');
    await until('medic_requests_total{command="status",outcome="queued"}', (r) => r[0]?.value >= 1, 'the status request counted');
    await until('medic_jobs_total{command="status",outcome="warn"}', (r) => r[0]?.value >= 1, 'the status job counted by its verdict');
    const probes = await until('medic_probe_duration_seconds_count{cluster="lab"}', (r) => r.length >= 3, 'a probe series per node');
    // The status job's connections stay open for the next one (node3 answered SSH: all three).
    await until('medic_ssh_kept_connections', (r) => r[0]?.value === 3, 'three kept SSH connections');
    expect(probes.map((p) => p.metric.node).sort()).toEqual(expect.arrayContaining(['node1', 'node2', 'node3']));

    const before = h.fake.messages(LAB_CHANNEL).length;
    await h.slash('replace-member lab node3', { user: ALICE });
    const plan = await waitPlanMessage(h, /etcd replace-member — lab/, before);
    expect((await click(h, plan, 'approve', BOB)).reply).toMatch(/it runs now/);
    await h.fake.waitFor(() => /done: all 11 steps ran/.test(threadText(h, plan.ts)) || undefined, 240_000);

    // What the repair looked like from Prometheus: each step's time by action, the outcome,
    // how long the plan waited for its approver, the verdict back to healthy.
    const steps = await until('medic_step_duration_seconds_count{outcome=~"done|skipped"}', (r) => r.reduce((n, x) => n + x.value, 0) >= 11, 'the 11 steps');
    expect(steps.map((s) => s.metric.action)).toEqual(expect.arrayContaining(['etcd.memberRemove', 'node.stopEtcd', 'etcd.memberAddLearner', 'etcd.memberPromote', 'cluster.verify']));
    const slowest = await prom.query('topk(1, max by (action) (medic_step_duration_seconds_sum))');
    expect(slowest[0].value).toBeGreaterThan(0);
    await until('medic_jobs_total{command="replace-member",outcome="succeeded"}', (r) => r[0]?.value === 1, 'the job succeeded');
    await until('medic_approval_wait_seconds_count{command="replace-member"}', (r) => r[0]?.value === 1, 'the approval wait');
    await until('medic_cluster_verdict{cluster="lab",verdict="healthy"}', (r) => r[0]?.value === 1, 'verdict healthy again');
    await until('medic_cluster_verdict{cluster="lab",verdict="degraded"}', (r) => r[0]?.value === 0, 'no longer degraded');
    const queue = await until('medic_queue_jobs', (r) => r.length > 0, 'queue depth');
    expect(queue.map((q) => q.metric.state)).toEqual(expect.arrayContaining(['waiting', 'active', 'failed']));
    expect((await prom.query('medic_lease_lost_total')).length).toBe(0);

    // The same process answers its probes.
    expect((await fetch(`${h.medic.opsUrl}/healthz`)).status).toBe(200);
    const ready = await fetch(`${h.medic.opsUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.text()).toBe('ok redis\nok config\nok worker\n');
  });
});

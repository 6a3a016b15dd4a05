/**
 * Web and worker as separate processes (MEDIC_ROLE=web / worker), as in production:
 * the web process only validates and queues, the worker runs the job and posts to Slack.
 */
import type { ChildProcess } from 'node:child_process';
import { startBot, stopProcess } from './support/processes';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { FakeSlack } from './support/fake-slack';
import { signedSlashCommand } from './support/slack-sign';
import { LAB_DIR, labConfigPath, waitLabHealthy } from './support/lab';
import { TEST_REDIS_URL, SIGNING_SECRET, LAB_CHANNEL, blocksText } from './support/harness';


function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function waitFor(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('MEDIC_ROLE=web and MEDIC_ROLE=worker as two processes', () => {
  const fake = new FakeSlack();
  const procs: ChildProcess[] = [];
  afterAll(async () => {
    await Promise.all(procs.map((p) => stopProcess(p)));
    await fake.stop();
  });

  it('the web process queues, the worker process posts the status to Slack', async () => {
    await waitLabHealthy();
    await fake.start();
    const port = await freePort();
    const queue = `roles-${process.pid}-${Date.now()}`;
    const common = {
      MEDIC_CONFIG: labConfigPath(), REDIS_URL: TEST_REDIS_URL, SLACK_BOT_TOKEN: fake.token,
      SLACK_SIGNING_SECRET: SIGNING_SECRET, SLACK_API_URL: fake.url, MEDIC_QUEUE: queue,
    };
    // The web process gets no SSH key: it can't touch the nodes.
    const web = startBot({ ...common, PORT: String(port), HOST: '127.0.0.1' }, 'web');
    procs.push(web.child);
    await waitFor('the web process to listen', () => /slack adapter started/.test(web.log()), 30000);

    // Queued before any worker runs: the job waits in Redis.
    const res = await signedSlashCommand({
      url: `http://127.0.0.1:${port}/slack/events`,
      signingSecret: SIGNING_SECRET,
      fields: { command: '/etcd', text: 'status lab', user_id: 'U0ALICE', channel_id: LAB_CHANNEL, team_id: 'T0MEDIC', response_url: fake.responseUrl() },
    });
    expect(res.status).toBe(200);
    expect(fake.messages()).toHaveLength(0);

    // A worker needs only the bot token to post (no signing secret: it serves nothing).
    const { SLACK_SIGNING_SECRET: _unused, ...workerEnv } = common;
    const worker = startBot({ ...workerEnv, MEDIC_SSH_KEY_FILE: join(LAB_DIR, 'bot_id_ed25519') });
    procs.push(worker.child);
    const msg = await fake.waitFor((f) => f.messages(LAB_CHANNEL)[0], 60000);
    expect(blocksText(msg.blocks ?? [])).toContain('healthy: 3/3 voting members healthy');
  });
});

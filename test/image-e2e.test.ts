/**
 * The image's root filesystem runs `status` against the lab as the image would: its own
 * Node.js 20 and the bot built from this checkout, uid 10001, a read-only root, the
 * inventory and SSH key mounted in. No container runtime starts containers on this machine
 * (crun can't set their rlimits), so scripts/run-rootfs.sh does what the runtime would.
 * Needs the debootstrap tree scripts/build-image.sh makes once (1-2 minutes, Debian's
 * mirror); where it was never made, this suite is skipped and says so.
 */
import { chownSync, chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureLabHealthy, LAB_DIR, REPO_ROOT, run } from './support/lab';
import { TEST_REDIS_URL } from './support/harness';

const IMAGE_DIR = process.env.IMAGE_DIR || '/var/tmp/etcd-medic-image';
const built = existsSync(join(IMAGE_DIR, 'rootfs', 'usr', 'bin', 'node'));
if (!built) {
  // eslint-disable-next-line no-console
  console.log(`image-e2e skipped: no root filesystem in ${IMAGE_DIR}/rootfs (bash scripts/build-image.sh makes it)`);
}

(built ? describe : describe.skip)('the image\'s root filesystem (lab)', () => {
  let dir: string;
  beforeAll(async () => {
    await ensureLabHealthy();
    // The tree keeps its Debian part; the bot inside is rebuilt from this checkout.
    const b = await run('bash', [join(REPO_ROOT, 'scripts', 'build-image.sh')], { timeoutMs: 600_000, env: { ...process.env, IMAGE_DIR, SKIP_BUILDAH: '1' } });
    if (b.code !== 0) throw new Error(`build-image.sh failed:\n${b.stderr.slice(-3000)}`);
    dir = mkdtempSync(join(tmpdir(), 'medic-image-'));
    mkdirSync(join(dir, 'etc'));
    mkdirSync(join(dir, 'state'));
    copyFileSync(join(LAB_DIR, 'clusters.yaml'), join(dir, 'etc', 'clusters.yaml'));
    copyFileSync(join(LAB_DIR, 'bot_id_ed25519'), join(dir, 'etc', 'ssh-key'));
    for (const p of [dir, join(dir, 'etc'), join(dir, 'state'), join(dir, 'etc', 'clusters.yaml'), join(dir, 'etc', 'ssh-key')]) chownSync(p, 10001, 10001);
    chmodSync(join(dir, 'etc', 'ssh-key'), 0o400);
  }, 660_000);
  afterAll(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it('holds Node.js 20, etcdctl and etcdutl 3.5, the bot, and no key or token', async () => {
    const root = join(IMAGE_DIR, 'rootfs');
    expect((await run('chroot', [root, '/usr/bin/node', '--version'])).stdout).toMatch(/^v20\./);
    expect((await run('chroot', [root, 'etcdctl', 'version'])).stdout).toMatch(/etcdctl version: 3\.5\.\d+/);
    expect((await run('chroot', [root, 'etcdutl', 'version'])).stdout).toMatch(/etcdutl version: 3\.5\.\d+/);
    expect(existsSync(join(root, 'opt', 'etcd-medic', 'dist', 'src', 'main.js'))).toBe(true);
    const secrets = await run('grep', ['-rlE', '--exclude-dir=node_modules', 'BEGIN (OPENSSH|RSA|EC) PRIVATE KEY|xox[abp]-[0-9]', join(root, 'opt'), join(root, 'etc'), join(root, 'var', 'lib', 'etcd-medic')]);
    expect(secrets.stdout).toBe('');
  });

  it('runs `status lab` from its console as uid 10001 on a read-only root: the three members, healthy', async () => {
    const r = await run('bash', [
      join(REPO_ROOT, 'scripts', 'run-rootfs.sh'),
      '-v', `${join(dir, 'etc')}:/etc/etcd-medic:ro`, '-v', `${join(dir, 'state')}:/var/lib/etcd-medic`,
      '-e', `REDIS_URL=${TEST_REDIS_URL}`, '-e', 'MEDIC_SSH_KEY_FILE=/etc/etcd-medic/ssh-key', '-e', 'MEDIC_METRICS_PORT=',
      '-e', `MEDIC_QUEUE=image-${process.pid}`,
    ], { input: 'status lab\n', timeoutMs: 120_000, env: { ...process.env, IMAGE_DIR } });
    expect(r.stdout).toContain('you are console:etcd-medic');
    expect(r.stdout).toContain('healthy: 3/3 voting members healthy');
    // Member ids are hex without leading zeros (15 digits for one in 16).
    for (const n of ['node1', 'node2', 'node3']) expect(r.stdout).toMatch(new RegExp(`^${n}\\s+[0-9a-f]{1,16}\\s+(leader|follower)\\s+ok`, 'm'));
    expect(r.code).toBe(0);
  });
});

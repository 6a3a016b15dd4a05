import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { parseConfig } from '../src/config/load';
import { isMedicError } from '../src/engine/errors';

const example = readFileSync(join(__dirname, '..', 'deploy', 'clusters.example.yaml'), 'utf8');

function withChange(mutate: (raw: any) => void): string {
  const raw = parse(example);
  mutate(raw);
  return stringify(raw);
}

function errorOf(text: string): string {
  try {
    parseConfig(text, 'clusters.yaml');
  } catch (e) {
    if (isMedicError(e)) { expect(e.code).toBe('CONFIG_INVALID'); return e.message; }
    throw e;
  }
  throw new Error('config was accepted');
}

describe('clusters.yaml', () => {
  it('accepts the example in deploy/ and fills in kubeadm defaults', () => {
    const cfg = parseConfig(example);
    expect(cfg.clusters[0].name).toBe('prod-eu1');
    expect(cfg.clusters[0].paths.dataDir).toBe('/var/lib/etcd');
    expect(cfg.clusters[0].nodes.map((n) => n.name)).toEqual(['cp1', 'cp2', 'cp3']);
  });

  it('names the field and what is wrong with a bad host key fingerprint', () => {
    const msg = errorOf(withChange((r) => { r.clusters[0].nodes[2].ssh.hostKey = 'ab:cd:ef'; }));
    expect(msg).toContain('clusters[0](prod-eu1).nodes[2](cp3).ssh.hostKey');
    expect(msg).toContain('SHA256:');
  });

  it('refuses secrets or unknown fields in the YAML', () => {
    const msg = errorOf(withChange((r) => { r.clusters[0].ssh.privateKey = '-----BEGIN'; }));
    expect(msg).toContain('clusters[0](prod-eu1).ssh');
    expect(msg).toMatch(/privateKey/);
  });

  it('refuses a cluster named "all" (/etcd status all means every cluster)', () => {
    expect(errorOf(withChange((r) => { r.clusters[0].name = 'all'; }))).toMatch(/clusters\[0\]\(all\)\.name: "all" is reserved/);
  });

  it('refuses a node name that could carry shell metacharacters', () => {
    const msg = errorOf(withChange((r) => { r.clusters[0].nodes[0].name = 'cp1;rm -rf /'; }));
    expect(msg).toContain('nodes[0]');
    expect(msg).toContain('.name');
  });

  it('refuses duplicate node names and missing channels', () => {
    expect(errorOf(withChange((r) => { r.clusters[0].nodes[1].name = 'cp1'; }))).toContain('"cp1" appears twice');
    expect(errorOf(withChange((r) => { delete r.clusters[0].channels; }))).toContain('clusters[0](prod-eu1).channels');
  });

  it('refuses invalid YAML with a clear message', () => {
    expect(errorOf('clusters: [')).toContain('not valid YAML');
  });
  it('refuses "*" among the destructive approvers, naming the field and why', () => {
    for (const approvers of [['*'], ['U0LEAD1', '*']]) {
      const msg = errorOf(withChange((r) => { r.clusters[0].access.destructive.approvers = approvers; }));
      expect(msg).toBe('clusters.yaml: clusters[0](prod-eu1).access.destructive.approvers: "*" would let anyone approve destructive plans: list user ids, user groups or console:<name>');
    }
    // Mutating plans and who may ask stay open to "*".
    const open = parseConfig(withChange((r) => {
      r.clusters[0].access.mutating.approvers = ['*'];
      r.clusters[0].access.destructive.requesters = ['*'];
    }));
    expect(open.clusters[0].access.mutating.approvers).toEqual(['*']);
    expect(open.clusters[0].access.destructive.approvers).toEqual(['U0LEAD1', 'U0LEAD2']);
  });

  it('accepts destructive approvers that name people, groups and console users', () => {
    const cfg = parseConfig(withChange((r) => { r.clusters[0].access.destructive.approvers = ['U0LEAD1', 'S0SRE', 'console:bob']; }));
    expect(cfg.clusters[0].access.destructive.approvers).toEqual(['U0LEAD1', 'S0SRE', 'console:bob']);
  });
});

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EtcdManifest } from '../src/runtime/manifest';

const text = readFileSync(join(__dirname, 'fixtures', 'kubeadm-etcd.yaml'), 'utf8');

describe('kubeadm etcd manifest, edited as YAML', () => {
  it('reads flags from the container command list', () => {
    const m = EtcdManifest.parse(text);
    expect(m.flag('--name')).toBe('node1');
    expect(m.flag('--initial-cluster-state')).toBe('new');
    expect(m.has('--force-new-cluster')).toBe(false);
    expect(m.argv()[0]).toBe('etcd');
  });

  it('changes one flag and nothing else, even where the same text appears in another flag', () => {
    const m = EtcdManifest.parse(text);
    const cluster = m.flag('--initial-cluster');
    m.set('--initial-advertise-peer-urls', 'https://127.10.0.99:2380').set('--initial-cluster-state', 'existing');
    expect(m.flag('--initial-cluster')).toBe(cluster); // the IP inside it is untouched
    const out = m.toString();
    const before = text.split('\n');
    const after = out.split('\n');
    expect(after).toHaveLength(before.length);
    const changed = after.filter((l, i) => l !== before[i]);
    expect(changed).toEqual(['    - --initial-advertise-peer-urls=https://127.10.0.99:2380', '    - --initial-cluster-state=existing']);
  });

  it('adds and removes a bare flag (--force-new-cluster) and round-trips', () => {
    const added = EtcdManifest.parse(text).set('--force-new-cluster').toString();
    expect(EtcdManifest.parse(added).flag('--force-new-cluster')).toBe('true');
    const removed = EtcdManifest.parse(added).remove('--force-new-cluster').toString();
    expect(removed).toBe(text);
  });

  it('a manifest as kubeadm writes it for etcd 3.6 (--feature-gates, de-prefixed flags, node IP in several flags) survives force-new-cluster\'s and restore\'s edits byte for byte elsewhere', () => {
    const v36 = readFileSync(join(__dirname, 'fixtures', 'kubeadm-etcd-3.6.yaml'), 'utf8');
    const lines = v36.split('\n');
    // force-new-cluster: the flag in, then out again.
    const forced = EtcdManifest.parse(v36).set('--force-new-cluster').toString();
    expect(forced.split('\n').filter((l) => !lines.includes(l))).toEqual(['    - --force-new-cluster']);
    expect(forced.split('\n').filter((l) => l !== '    - --force-new-cluster')).toEqual(lines);
    expect(EtcdManifest.parse(forced).remove('--force-new-cluster').toString()).toBe(v36);
    // restore: the node's identity in the restored cluster, nothing else.
    const restored = EtcdManifest.parse(v36)
      .set('--name', 'cp-2').set('--initial-cluster', 'cp-1=https://10.0.0.11:2380,cp-2=https://10.0.0.12:2380')
      .set('--initial-cluster-state', 'new').set('--initial-cluster-token', 'etcd-medic-restore-0123456789abcdef').toString();
    const after = restored.split('\n');
    expect(after.filter((l) => !lines.includes(l))).toEqual(['    - --initial-cluster-state=new', '    - --initial-cluster-token=etcd-medic-restore-0123456789abcdef']);
    expect(lines.filter((l) => !after.includes(l))).toEqual(['    - --initial-cluster-state=existing']);
    for (const keep of ['    - --feature-gates=InitialCorruptCheck=true', '    - --snapshot-catchup-entries=5000', '    - --compact-hash-check-time=1m0s',
      '    - --watch-progress-notify-interval=5s', '    - --listen-client-urls=https://127.0.0.1:2379,https://10.0.0.12:2379', '    image: registry.k8s.io/etcd:3.6.5-0']) {
      expect(after).toContain(keep);
    }
    expect(EtcdManifest.parse(v36).flag('--feature-gates')).toBe('InitialCorruptCheck=true');
  });

  it('refuses what is not a kubeadm etcd manifest, and bad flag names or values', () => {
    expect(() => EtcdManifest.parse('kind: Deployment\n')).toThrow(/not a Pod manifest/);
    expect(() => EtcdManifest.parse('kind: Pod\nspec: {containers: [{name: etcd, command: [kube-apiserver]}]}\n')).toThrow(/runs 'kube-apiserver', not etcd/);
    expect(() => EtcdManifest.parse('kind: Pod\nspec: [\n')).toThrow(/not valid YAML/);
    const m = EtcdManifest.parse(text);
    expect(() => m.set('--name;reboot', 'x')).toThrow(/not an etcd flag name/);
    expect(() => m.set('--name', 'a\n- --force-new-cluster')).toThrow(/line break/);
  });

  it('refuses to guess when a flag appears twice', () => {
    const doubled = EtcdManifest.parse(text).toString().replace('    - --name=node1\n', '    - --name=node1\n    - --name=node9\n');
    expect(() => EtcdManifest.parse(doubled).flag('--name')).toThrow(/appears 2 times/);
  });
});

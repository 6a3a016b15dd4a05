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

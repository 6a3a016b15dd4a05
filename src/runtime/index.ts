/** Node runtimes: how etcd runs on a node (kubeadm static pod or systemd unit), behind one interface. */
import { MedicError } from '../engine/errors';
import { KubeadmRuntime } from './kubeadm';
import { SystemdRuntime } from './systemd';
import type { NodeRuntime, RuntimeDeps } from './types';

export type RuntimeKind = NodeRuntime['kind'];

export function createRuntime(kind: RuntimeKind, deps: RuntimeDeps): NodeRuntime {
  switch (kind) {
    case 'kubeadm-static-pod': return new KubeadmRuntime(deps);
    case 'systemd': return new SystemdRuntime(deps);
    default: throw new MedicError('CONFIG_INVALID', `unknown node runtime: ${String(kind)}`);
  }
}

export { adaptPeerConfig, retargetUrlList } from './flags';
export type { MemberUrls } from './flags';
export { EnvFileConfig } from './env-file';
export { EtcdManifest } from './manifest';
export type * from './types';

/**
 * node.ensurePki: the etcd CA and the node's own certificates, as kubeadm lays them out.
 * The CA comes from a healthy member (over SFTP) when missing or different; leaf
 * certificates are generated on the node (the keys never leave it).
 */
import { MedicError } from '../engine/errors';
import { copyCa, generateCert, inspectPki, planPki } from '../exec/pki';
import type { ActionContext, StepOutcome } from './actions';

export async function ensurePki(ctx: ActionContext, nodeName: string): Promise<StepOutcome> {
  const { res } = ctx;
  const pki = res.cluster.paths.pki;
  const node = res.node(nodeName);
  const ip = new URL(node.peerUrl).hostname;
  // The node's own PKI is read while a healthy member is found to compare it with.
  const target = await res.session(nodeName);
  const targetState = inspectPki(target, pki);
  targetState.catch(() => undefined);
  const { node: donor } = await res.healthyEtcd({ exclude: [nodeName] });
  const donorSession = await res.session(donor);
  const donorState = await inspectPki(donorSession, pki);
  const clusterCaSha256 = donorState.files['ca.crt'].sha256;
  if (!clusterCaSha256) throw new MedicError('REMOTE_FAILED', `${donor} has no ${pki}/ca.crt: can't tell which CA the cluster uses`);
  const actions = planPki(await targetState, { name: nodeName, ip }, { clusterCaSha256 });
  if (!actions.length) return { status: 'skipped', detail: `${nodeName}: CA and certificates already in place and valid` };
  const done: string[] = [];
  for (const a of actions) {
    if (a.kind === 'copy-ca') {
      ctx.progress(`copying the etcd CA from ${donor} to ${nodeName} (${a.reason})`);
      await copyCa(donorSession, target, pki);
      done.push(`CA copied from ${donor} (${a.reason})`);
    } else {
      ctx.progress(`generating ${a.cert} certificate on ${nodeName} (${a.reason})`);
      await generateCert(target, pki, a.cert, { name: nodeName, ip });
      done.push(`${a.cert} certificate generated (${a.reason})`);
    }
  }
  const left = planPki(await inspectPki(target, pki), { name: nodeName, ip }, { clusterCaSha256 });
  if (left.length) throw new MedicError('REMOTE_FAILED', `${nodeName}: PKI still incomplete after repair: ${left.map((a) => a.reason).join('; ')}`);
  return { status: 'done', detail: `${nodeName}: ${done.join('; ')}` };
}

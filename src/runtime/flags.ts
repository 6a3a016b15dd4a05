/**
 * A new or replaced member's config made from a healthy peer's: same certificates paths,
 * data dir and tuning, but its own name and URLs. Edited flag by flag on the parsed
 * config, never by text substitution: a sed on the peer's IP also rewrites it inside
 * --initial-cluster and breaks the join (RUNBOOK, seen by hand).
 */
import { MedicError } from '../engine/errors';
import { EtcdManifest } from './manifest';
import type { EtcdConfigDoc } from './types';

export interface MemberUrls {
  name: string;
  /** e.g. https://10.0.0.11:2379 */
  clientUrl: string;
  /** e.g. https://10.0.0.11:2380 */
  peerUrl: string;
}

/** Flags holding URLs of the client side (the metrics listener sits beside the client one). */
const CLIENT_FLAGS = ['--advertise-client-urls', '--listen-client-urls', '--listen-metrics-urls'];
const PEER_FLAGS = ['--initial-advertise-peer-urls', '--listen-peer-urls'];
/** The new member advertises these to the cluster: pointing at the peer would be a silent disaster. */
const ADVERTISE_FLAGS = ['--advertise-client-urls', '--initial-advertise-peer-urls'];
const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);
const KUBEADM_CLIENT_URLS_ANNOTATION = 'kubeadm.kubernetes.io/etcd.advertise-client-urls';
/** scheme://host[:port][/path]; host may be a bracketed IPv6 literal. */
const URL_PARTS = /^([a-z][a-z0-9+.-]*:\/\/)(\[[^\]]*\]|[^/:?#]*)(.*)$/i;

/** The host part of a URL, lower-cased; undefined when it is not scheme://host... */
export function urlHost(url: string): string | undefined {
  return URL_PARTS.exec(url.trim())?.[2].toLowerCase();
}

/** In a comma-separated URL list, replaces the host of URLs on `from` by `to`; keeps everything else as written. */
export function retargetUrlList(list: string, from: string, to: string): string {
  return list.split(',').map((url) => {
    const m = URL_PARTS.exec(url);
    return m && m[2].toLowerCase() === from ? `${m[1]}${to}${m[3]}` : url;
  }).join(',');
}

/**
 * Turns a healthy peer's config into the target node's, in place: --name, the URL flags'
 * hosts, and for a kubeadm manifest the pod name, the advertise-client-urls annotation and
 * the probes' host. --initial-cluster and --initial-cluster-state are the caller's.
 */
export function adaptPeerConfig(doc: EtcdConfigDoc, peer: MemberUrls, target: MemberUrls): void {
  const name = doc.flag('--name');
  if (name !== undefined && name !== peer.name) {
    throw new MedicError('BAD_INPUT', `the config to adapt has --name=${name}, not ${peer.name}: is it really ${peer.name}'s?`);
  }
  const client = hostPair(peer.clientUrl, target.clientUrl);
  const peers = hostPair(peer.peerUrl, target.peerUrl);
  doc.set('--name', target.name);
  retargetFlags(doc, CLIENT_FLAGS, client);
  retargetFlags(doc, PEER_FLAGS, peers);
  if (doc instanceof EtcdManifest) adaptPod(doc, peer.name, target.name, client);
  checkAdvertised(doc, peer.name, target.name, client, peers);
}

type HostPair = { from: string; to: string };

function hostPair(peerUrl: string, targetUrl: string): HostPair {
  const from = urlHost(peerUrl);
  const to = urlHost(targetUrl);
  if (!from || !to) throw new MedicError('BAD_INPUT', `not a URL: ${!from ? peerUrl : targetUrl}`);
  if (LOCAL_HOSTS.has(from) || LOCAL_HOSTS.has(to)) {
    throw new MedicError('BAD_INPUT', `member URL on a loopback name (${!LOCAL_HOSTS.has(from) ? targetUrl : peerUrl}): the config's local listeners could not be told apart`);
  }
  return { from, to };
}

function retargetFlags(doc: EtcdConfigDoc, flags: string[], h: HostPair): void {
  for (const f of flags) {
    const v = doc.flag(f);
    if (v !== undefined) doc.set(f, retargetUrlList(v, h.from, h.to));
  }
}

function adaptPod(m: EtcdManifest, peer: string, target: string, client: HostPair): void {
  if (m.podName() === `etcd-${peer}`) m.setPodName(`etcd-${target}`);
  const urls = m.annotation(KUBEADM_CLIENT_URLS_ANNOTATION);
  if (urls !== undefined) m.setAnnotation(KUBEADM_CLIENT_URLS_ANNOTATION, retargetUrlList(urls, client.from, client.to));
  m.mapProbeHosts((h) => (h.toLowerCase() === client.from ? client.to : h));
}

/** A peer config advertising a name we don't know (a DNS alias) would keep pointing at the peer. */
function checkAdvertised(doc: EtcdConfigDoc, peer: string, target: string, client: HostPair, peers: HostPair): void {
  for (const f of ADVERTISE_FLAGS) {
    const v = doc.flag(f);
    if (v === undefined) continue;
    const want = f === '--advertise-client-urls' ? client.to : peers.to;
    if (!v.split(',').some((u) => urlHost(u) === want)) {
      throw new MedicError('BAD_INPUT', `${peer}'s ${f}=${v} has no URL on ${peer}'s host from the inventory: can't adapt it for ${target}; fix the inventory URLs or write the config by hand`);
    }
  }
}

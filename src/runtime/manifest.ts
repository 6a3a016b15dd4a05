import { Document, isMap, isScalar, isSeq, parseDocument, Scalar, YAMLMap, YAMLSeq } from 'yaml';
import { MedicError } from '../engine/errors';
import type { EtcdConfigDoc } from './types';

/** etcd flags as kubeadm writes them: --name=value, or a bare --flag. */
const FLAG_NAME = /^--[a-z0-9][a-z0-9-]*$/;

/**
 * kubeadm's etcd static-pod manifest, edited as YAML: the container's `command` list, one
 * flag at a time. Never text substitution — a sed on an IP also rewrites it inside
 * --initial-cluster and breaks the join (seen by hand, RUNBOOK).
 */
export class EtcdManifest implements EtcdConfigDoc {
  private constructor(
    private readonly doc: Document,
    private readonly container: YAMLMap,
    private readonly command: YAMLSeq,
    /** Keep the file's list style: kubeadm writes "- item" at its key's indentation. */
    private readonly indentSeq: boolean,
  ) {}

  static parse(text: string, source = 'etcd manifest'): EtcdManifest {
    const doc = parseDocument(text);
    if (doc.errors.length) throw invalid(source, `not valid YAML: ${doc.errors[0].message}`);
    if (doc.get('kind') !== 'Pod') throw invalid(source, 'not a Pod manifest (kind is not Pod)');
    const containers = doc.getIn(['spec', 'containers']);
    if (!isSeq(containers)) throw invalid(source, 'spec.containers is missing');
    const etcd = containers.items.find((c) => isMap(c) && c.get('name') === 'etcd') ?? containers.items[0];
    const command = isMap(etcd) ? etcd.get('command', true) : undefined;
    if (!isSeq(command) || !command.items.every((i) => isScalar(i) && typeof i.value === 'string')) {
      throw invalid(source, 'the etcd container has no command list of strings');
    }
    const first = (command.items[0] as Scalar).value as string;
    if (!/(^|\/)etcd$/.test(first)) throw invalid(source, `the etcd container runs '${first}', not etcd`);
    return new EtcdManifest(doc, etcd as YAMLMap, command, !/^( *)[\w.-]+:\n\1- /m.test(text));
  }

  /** The argv, as kubelet would run it. */
  argv(): string[] {
    return this.command.items.map((i) => (i as Scalar).value as string);
  }

  /** The value of --name=value; 'true' for a bare --flag; undefined when absent. */
  flag(name: string): string | undefined {
    const hits = this.indexesOf(name);
    if (hits.length > 1) throw new MedicError('BAD_INPUT', `flag ${name} appears ${hits.length} times in the manifest: fix it by hand first`);
    if (hits.length === 0) return undefined;
    const arg = this.argv()[hits[0]];
    return arg === name ? 'true' : arg.slice(name.length + 1);
  }

  has(name: string): boolean {
    return this.flag(name) !== undefined;
  }

  /** Sets --name=value (or a bare --name when value is undefined), in place or appended. */
  set(name: string, value?: string): this {
    checkName(name);
    if (value !== undefined && /[\n\r\0]/.test(value)) throw new MedicError('BAD_INPUT', `flag ${name}: value contains a line break or NUL`);
    const arg = value === undefined ? name : `${name}=${value}`;
    const [at, ...more] = this.indexesOf(name);
    if (more.length) throw new MedicError('BAD_INPUT', `flag ${name} appears ${more.length + 1} times in the manifest: fix it by hand first`);
    if (at === undefined) this.command.items.push(this.doc.createNode(arg));
    else (this.command.items[at] as Scalar).value = arg;
    return this;
  }

  /** Removes every occurrence of the flag. */
  remove(name: string): this {
    checkName(name);
    const drop = new Set(this.indexesOf(name));
    this.command.items = this.command.items.filter((_, i) => !drop.has(i));
    return this;
  }

  /** metadata.name. kubeadm writes "etcd"; other tools write etcd-<node>. */
  podName(): string | undefined {
    const v = this.doc.getIn(['metadata', 'name']);
    return typeof v === 'string' ? v : undefined;
  }

  setPodName(name: string): this {
    this.doc.setIn(['metadata', 'name'], name);
    return this;
  }

  annotation(key: string): string | undefined {
    const v = this.doc.getIn(['metadata', 'annotations', key]);
    return typeof v === 'string' ? v : undefined;
  }

  /** Sets an annotation that is already there; a manifest without it stays without. */
  setAnnotation(key: string, value: string): this {
    if (this.annotation(key) !== undefined) this.doc.setIn(['metadata', 'annotations', key], value);
    return this;
  }

  /** Rewrites httpGet.host of the etcd container's probes (kubeadm points them at the metrics URL's host). */
  mapProbeHosts(f: (host: string) => string): this {
    for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
      const host = this.container.getIn([probe, 'httpGet', 'host']);
      if (typeof host === 'string') this.container.setIn([probe, 'httpGet', 'host'], f(host));
    }
    return this;
  }

  toString(): string {
    return this.doc.toString({ indentSeq: this.indentSeq, lineWidth: 0 });
  }

  private indexesOf(name: string): number[] {
    checkName(name);
    return this.argv().flatMap((a, i) => (i > 0 && (a === name || a.startsWith(`${name}=`)) ? [i] : []));
  }
}

function checkName(name: string): void {
  if (!FLAG_NAME.test(name)) throw new MedicError('BAD_INPUT', `not an etcd flag name: ${JSON.stringify(name)}`);
}

function invalid(source: string, why: string): MedicError {
  return new MedicError('REMOTE_FAILED', `${source}: ${why}; check the file on the node`);
}

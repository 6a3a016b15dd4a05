import { z } from 'zod';

/** Names typed in chat and used in file paths and remote commands: strict. */
export const NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** OpenSSH's fingerprint form: "SHA256:" + unpadded base64 of the SHA-256 of the key blob. */
export const FINGERPRINT_PATTERN = /^SHA256:[A-Za-z0-9+/]{43}$/;
/** Slack user (U…/W…), user group (S…), a console user ("console:alice") or "*" (anyone). */
export const PRINCIPAL_PATTERN = /^(\*|[UW][A-Z0-9]{2,20}|S[A-Z0-9]{2,20}|console:[a-z0-9._-]{1,32})$/;
/** Slack channel id (C…/G…/D…), or "console" for the console adapter. */
export const CHANNEL_PATTERN = /^([CGD][A-Z0-9]{2,20}|console)$/;
const ABS_PATH = /^\/[A-Za-z0-9._/-]*$/;

const name = z.string().regex(NAME_PATTERN, 'lowercase letters, digits and "-", 1-63 chars, starting and ending alphanumeric');
const absPath = z.string().regex(ABS_PATH, 'an absolute path of letters, digits, ".", "_", "-" and "/"');
const url = z.string().regex(/^https?:\/\/[A-Za-z0-9.-]+:\d{1,5}$/, 'scheme://host:port, e.g. https://10.0.0.11:2379');
const principal = z.string().regex(PRINCIPAL_PATTERN, 'a Slack user id (U…), user group id (S…), "console:<name>" or "*"');
const ms = (def: number) => z.number().int().positive().max(3_600_000).default(def);

export const nodeSchema = z.object({
  name,
  ssh: z.object({
    host: z.string().regex(/^[A-Za-z0-9.:-]+$/, 'a host name or IP address'),
    port: z.number().int().min(1).max(65535).default(22),
    /** Overrides the cluster's ssh.user. */
    user: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/).optional(),
    /** Pinned host key fingerprint as `ssh-keygen -lf` prints it: SHA256:… */
    hostKey: z.string().regex(FINGERPRINT_PATTERN, 'an OpenSSH fingerprint "SHA256:<43 base64 chars>" (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)'),
  }).strict(),
  /** The member's client URL as the node itself reaches it (the tunnel dials it from the node). */
  clientUrl: url,
  /** The member's peer URL (used when the member is added back). */
  peerUrl: url,
}).strict();

const accessRule = z.object({
  /** Who may ask for commands of this risk. */
  requesters: z.array(principal).default(['*']),
  /** Who may approve them (unused for read commands). */
  approvers: z.array(principal).default([]),
  /** Distinct approvers required, none of them the requester. */
  approvals: z.number().int().min(0).max(5).optional(),
}).strict();

export const clusterSchema = z.object({
  // "all" is what /etcd status all reads as every cluster.
  name: name.refine((n) => n !== 'all', '"all" is reserved (/etcd status all shows every cluster): pick another name'),
  description: z.string().max(200).optional(),
  /** Channels allowed to act on this cluster. */
  channels: z.array(z.string().regex(CHANNEL_PATTERN, 'a Slack channel id (C…/G…) or "console"')).min(1),
  runtime: z.enum(['kubeadm-static-pod', 'systemd']).default('kubeadm-static-pod'),
  paths: z.object({
    manifest: absPath.default('/etc/kubernetes/manifests/etcd.yaml'),
    dataDir: absPath.default('/var/lib/etcd'),
    pki: absPath.default('/etc/kubernetes/pki/etcd'),
    /**
     * The bot's own directory on each node: stopped manifests, backups of every file it
     * changes, safety copies. Outside the manifests directory, or kubelet would run them.
     */
    workDir: absPath.default('/etc/kubernetes/etcd-medic'),
  }).strict().default({}),
  /** runtime systemd: the unit and its environment file (ETCD_* variables). */
  systemd: z.object({
    unit: z.string().regex(/^[A-Za-z0-9@._-]{1,64}\.service$/, 'a unit name like etcd.service').default('etcd.service'),
    envFile: absPath.default('/etc/default/etcd'),
  }).strict().default({}),
  ssh: z.object({
    user: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/).default('root'),
    connectTimeoutMs: ms(5000),
    commandTimeoutMs: ms(30000),
    /**
     * How long a probe keeps trying a node whose sshd refuses or drops the connection before
     * calling it unreachable (a node rebooting, sshd restarting): within statusTimeoutMs.
     */
    connectRetryMs: ms(3000),
  }).strict().default({}),
  etcd: z.object({
    /**
     * How the bot authenticates to etcd:
     * - node-healthcheck-client: read kubeadm's healthcheck-client cert/key and the CA from the node (paths.pki)
     * - client-cert: files on the bot's side
     */
    auth: z.discriminatedUnion('mode', [
      z.object({ mode: z.literal('node-healthcheck-client') }).strict(),
      z.object({ mode: z.literal('client-cert'), ca: absPath, cert: absPath, key: absPath }).strict(),
    ]).default({ mode: 'node-healthcheck-client' }),
    /** Deadline of one etcd API call. */
    callTimeoutMs: ms(3000),
  }).strict().default({}),
  /** Bound on checking one member for /etcd status: a dead node shows as unreachable after it. */
  statusTimeoutMs: ms(8000),
  access: z.object({
    read: accessRule.default({}),
    mutating: accessRule.default({}),
    // "*" here would let anyone in the channel approve a restore or a member removal: the
    // second person a destructive plan needs must be someone the config names.
    destructive: accessRule.superRefine((rule, ctx) => {
      if (rule.approvers.includes('*')) {
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          path: ['approvers'],
          message: '"*" would let anyone approve destructive plans: list user ids, user groups or console:<name>',
        });
      }
    }).default({}),
    /** How long an approval request stays open. */
    approvalTtlMinutes: z.number().int().min(1).max(24 * 60).default(15),
  }).strict().default({}),
  /**
   * The bot's snapshots of this cluster (snapshot save, scheduled ones, safety snapshots).
   * After each save a snapshot is kept while it is among the newest `keep` or younger than
   * `maxAgeDays`; the newest verified one is never removed.
   */
  snapshots: z.object({
    /** Newest snapshots always kept. @defaultValue 10 */
    keep: z.number().int().min(1).max(1000).default(10),
    /** Snapshots younger than this are kept too. @defaultValue 30 */
    maxAgeDays: z.number().positive().max(3650).default(30),
    /** Also keep a copy on the member's node at <dataDir>/snapshots/<id>.db, as the runbook does. @defaultValue false */
    copyOnNode: z.boolean().default(false),
    /** Take a scheduled snapshot every this many minutes (at least 5); none when absent. */
    scheduleMinutes: z.number().int().min(5).max(7 * 24 * 60).optional(),
  }).strict().default({}),
  nodes: z.array(nodeSchema).min(1).max(9),
}).strict();

export const configSchema = z.object({
  clusters: z.array(clusterSchema).min(1),
}).strict();

export type NodeConfig = z.infer<typeof nodeSchema>;
export type ClusterConfig = z.infer<typeof clusterSchema>;
export type MedicConfig = z.infer<typeof configSchema>;

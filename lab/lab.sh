#!/usr/bin/env bash
# etcd-medic lab: a real 3-node etcd 3.4 cluster shaped like kubeadm's stacked etcd,
# on this machine's loopback (node1..3 = $LAB_NET.11..13, default 127.10.0.11..13; sshd :LAB_SSH_PORT, etcd
# https :2379/:2380, metrics http :2381, each on its node's address only).
# Each node is a mount + pid + UTS namespace (hostname nodeN) in which /etc/kubernetes, /var/lib/etcd,
# /var/log/pods, /var/log/containers, /root, /tmp and /var/tmp are its own, and
# etcdctl/etcdutl don't exist; it runs its own sshd and kubelet-lite (which runs etcd
# from /etc/kubernetes/manifests/etcd.yaml). Other paths are shared with the host.
#
# $LAB_DIR layout:
#   bot_id_ed25519{,.pub}   the bot's SSH key (authorized on every node)       kept by down
#   bot/{ca.crt,etcd-client.crt,etcd-client.key}  bot-side etcd client cert     kept by down
#   pki/ca.{crt,key}, pki/nodeN/*  the etcd CA and each node's kubeadm certs    kept by down
#   hostkeys/nodeN/ssh_host_ed25519_key{,.pub}                                  kept by down
#   clusters.yaml, known_hosts    written by up
#   nodes/nodeN/                  one node (deleted by down):
#     etc-kubernetes/ var-lib-etcd/ var-log-pods/ var-log-containers/ root/ tmp/ var-tmp/
#         (seen inside the node as /etc/kubernetes, /var/lib/etcd, ...)
#     sshd_config  log/{node,kubelet,sshd}.log  run/{mntns,ready,sshd.pid}  usrbin-overlay/
#
# Usage: lab/lab.sh <command>   (as root)
#   up                 keep the lab if up and healthy, else (re)create it fresh and wait
#                      for 3 healthy members; prints the path of clusters.yaml
#   down               stop everything, delete node state (keeps keys and certificates)
#   purge              down, then delete $LAB_DIR entirely
#   status             per node: pid of its init (host view), sshd, kubelet-lite, etcd, manifest
#   stop-node N [--kill]  kill everything of node N (sshd, sessions, kubelet-lite, etcd):
#                      SIGTERM then SIGKILL after 5 s; --kill: SIGKILL at once (power loss)
#   start-node N       start node N again with the same data and config
#   up --etcd V        the same, on etcd V (or env LAB_ETCD=V): 3.4 (Debian bookworm's
#                      3.4.23, the default) or a version Debian's newer releases package
#                      (3.5.16 from trixie, 3.5.30 from sid): fetched with apt-get download
#                      into a private apt state (LAB_APT_DIR, default /var/cache/etcd-medic-apt)
#                      and unpacked with dpkg -x under $LAB_DIR/etcd/V, never installed.
#                      A lab up on another version is recreated.
#   up with LAB_KEY=rsa|ec  the etcd PKI's key type: RSA-2048 (kubeadm's default) or P-256
#   up --layout L      how the cluster was formed (or env LAB_LAYOUT=L), recorded in $LAB_DIR/layout:
#                      static (the default): every manifest lists all three members,
#                      --initial-cluster-state=new, one --initial-cluster-token (a cluster
#                      built by hand, as in the seed article);
#                      kubeadm: as kubeadm init/join write them: node1 bootstraps alone
#                      (--initial-cluster=node1 only, no state or token flags); node2 and
#                      node3 are added as learners one at a time, their manifests list the
#                      members known at their join with --initial-cluster-state=existing,
#                      and each is promoted once in sync. A lab up in the other layout is recreated.
#   layout             how the lab's cluster was formed (static or kubeadm)
#   version            the lab's etcd version;  tools: the directory of the host-side
#                      etcdctl/etcdutl that match it (put it first in PATH for the bot)
#   stop-etcd N        move N's manifest to /etc/kubernetes/etcd.yaml.lab-stopped
#   start-etcd N       move it back
#   wipe-data N        stop etcd, empty N's /var/lib/etcd, put the manifest back
#   exec N -- cmd...   run a command inside node N (its mount + pid namespaces; default: bash)
#   etcdctl -- args    host-side etcdctl with the bot client cert, all endpoints
#   config             print the path of clusters.yaml
# N: node1|node2|node3 (or 1|2|3).
# Environment: LAB_DIR (default /var/lib/etcd-medic-lab), LAB_SSH_PORT (default 2222),
#   LAB_NET (default 127.10.0: the nodes are .11-.13 of it; a second lab beside the first
#   needs its own LAB_DIR and LAB_NET, e.g. 127.10.1).
set -euo pipefail

LAB_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAB_DIR="${LAB_DIR:-/var/lib/etcd-medic-lab}"
LAB_SSH_PORT="${LAB_SSH_PORT:-2222}"
LAB_NET="${LAB_NET:-127.10.0}"
NODES=(node1 node2 node3)
[[ $LAB_NET =~ ^127\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || { echo "lab: error: LAB_NET=$LAB_NET must be three numbers of 127.0.0.0/8, e.g. 127.10.1" >&2; exit 1; }
declare -A NODE_IP=([node1]=$LAB_NET.11 [node2]=$LAB_NET.12 [node3]=$LAB_NET.13)
SYSTEM_ETCD=3.4
LAB_APT_DIR="${LAB_APT_DIR:-/var/cache/etcd-medic-apt}"
CLUSTER_NAME=lab
UP_DEADLINE=${LAB_UP_DEADLINE:-40}
PKI_IN_NODE=/etc/kubernetes/pki/etcd

log() { echo "lab: $*" >&2; }
die() { echo "lab: error: $*" >&2; exit 1; }

[[ $LAB_DIR == /* && $LAB_DIR =~ ^[A-Za-z0-9._/-]+$ ]] || die "LAB_DIR=$LAB_DIR must be an absolute path of letters, digits, '.', '_', '-', '/'"
[[ $LAB_SSH_PORT =~ ^[0-9]+$ ]] || die "LAB_SSH_PORT=$LAB_SSH_PORT is not a port"
LAB_DIR="${LAB_DIR%/}"
[[ $LAB_APT_DIR == /* && $LAB_APT_DIR =~ ^[A-Za-z0-9._/-]+$ ]] || die "LAB_APT_DIR=$LAB_APT_DIR must be an absolute path"

BOT_KEY="$LAB_DIR/bot_id_ed25519"
BOT_DIR="$LAB_DIR/bot"
PKI="$LAB_DIR/pki"
HOSTKEYS="$LAB_DIR/hostkeys"
CONFIG="$LAB_DIR/clusters.yaml"
KNOWN_HOSTS="$LAB_DIR/known_hosts"

nd() { echo "$LAB_DIR/nodes/$1"; }
endpoints() { local n out=(); for n in "${NODES[@]}"; do out+=("https://${NODE_IP[$n]}:2379"); done; (IFS=,; echo "${out[*]}"); }

node_arg() {
  case "${1:-}" in
    node1|node2|node3) echo "$1" ;;
    1|2|3) echo "node$1" ;;
    *) die "unknown node '${1:-}': use node1, node2 or node3" ;;
  esac
}

require_root() { [[ $(id -u) == 0 ]] || die "must run as root (mount namespaces, bind mounts, sshd)"; }

require_tools() {
  local t missing=()
  for t in openssl ssh-keygen unshare nsenter setsid flock mount etcd etcdctl timeout; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  [[ -x /usr/sbin/sshd ]] || missing+=(/usr/sbin/sshd)
  command -v "${LAB_NODE_BIN:-node}" >/dev/null || missing+=(node)
  ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (Debian: etcd-server etcd-client openssh-server openssl util-linux)"
}

# Serialise state-changing commands (tests may call us concurrently). fd 9 must not
# leak into the node daemons (launch_node closes every fd > 2), or the lock would stay held.
lock() {
  mkdir -p "$LAB_DIR"
  exec 9>>"$LAB_DIR/.lock"
  flock -w 120 9 || die "another lab.sh holds $LAB_DIR/.lock for over 120 s"
}

# wait_until <seconds> <what> <command...>: poll every 0.2 s until the command succeeds.
wait_until() {
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@"; do
    ((SECONDS < end)) || { log "timed out after ${secs}s waiting for $what"; return 1; }
    sleep 0.2
  done
}

port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# ---------------------------------------------------------------- processes

host_mntns() { readlink "/proc/$$/ns/mnt"; }

# The mount-namespace id of a node ("mnt:[inode]"), or nothing when it isn't running.
node_ns() {
  local n=$1 d id pid
  d=$(nd "$n")
  id=$(cat "$d/run/mntns" 2>/dev/null) || return 0
  [[ -n $id && $id != "$(host_mntns)" ]] || return 0
  # Only trust it while some process still lives in it (a dead namespace's inode can be reused).
  for pid in $(pids_in_ns "$id"); do echo "$id"; return 0; done
}

pids_in_ns() { # <ns id>: one stat over /proc (a fork per process is too slow for polling)
  stat -c '%N' /proc/[0-9]*/ns/mnt 2>/dev/null |
    awk -v id="$1" '{ gsub(/[\047"]/, ""); if ($3 == id) { split($1, a, "/"); print a[3] } }' || true
}

node_pids() { local id; id=$(node_ns "$1"); [[ -n $id ]] && pids_in_ns "$id"; return 0; }

# Host pid of the node's init (pid 1 of the node's pid namespace) if running.
node_init_pid() {
  local n=$1 p id
  id=$(node_ns "$n"); [[ -n $id ]] || return 0
  for p in $(pids_in_ns "$id"); do
    awk '/^NSpid:/ { found = (NF > 2 && $NF == 1) } END { exit !found }' "/proc/$p/status" 2>/dev/null && { echo "$p"; return 0; }
  done
  return 0
}

comm_pids() { # <node> <comm>: pids of the node named <comm>
  local p
  for p in $(node_pids "$1"); do
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == "$2" ]] && echo "$p"
  done
  return 0
}

node_running() { [[ -n $(node_ns "$1") ]]; }
# The node's member etcd (kubelet-lite's, --data-dir=/var/lib/etcd), not any etcd a test runs beside it.
etcd_pids() { local p; for p in $(comm_pids "$1" etcd); do tr '\0' '\n' 2>/dev/null <"/proc/$p/cmdline" | grep -qx -- '--data-dir=/var/lib/etcd' && echo "$p"; done; return 0; }
etcd_running() { [[ -n $(etcd_pids "$1") ]]; }
etcd_gone() { ! etcd_running "$1"; }
sshd_up() { port_open "${NODE_IP[$1]}" "$LAB_SSH_PORT"; }
kubelet_pids() { local p; for p in $(comm_pids "$1" node); do grep -qa kubelet-lite "/proc/$p/cmdline" 2>/dev/null && echo "$p"; done; return 0; }

kill_pids() { # <signal> <pids...>
  local sig=$1; shift
  (($#)) && kill "-$sig" "$@" 2>/dev/null || true
}

# Kill every process in a mount namespace. Default: SIGTERM (etcd hands over leadership,
# kubelet-lite stops etcd), SIGKILL after 5 s. With "hard": SIGKILL at once (power loss).
kill_ns() { # <ns id> <label> [hard]
  local id=$1 label=$2 mode=${3:-} end pids
  [[ -n $id && $id != "$(host_mntns)" ]] || die "refusing to kill the host's mount namespace"
  if [[ $mode != hard ]]; then
    # shellcheck disable=SC2046
    kill_pids TERM $(pids_in_ns "$id")
    end=$((SECONDS + 5))
    while [[ -n $(pids_in_ns "$id") ]] && ((SECONDS < end)); do sleep 0.1; done
  fi
  pids=$(pids_in_ns "$id")
  if [[ -n $pids ]]; then
    [[ $mode == hard ]] || log "$label: SIGKILL to $(echo $pids)"
    # shellcheck disable=SC2086
    kill_pids KILL $pids
    end=$((SECONDS + 5))
    while [[ -n $(pids_in_ns "$id") ]] && ((SECONDS < end)); do sleep 0.1; done
  fi
  [[ -z $(pids_in_ns "$id") ]] || die "$label: processes survive SIGKILL: $(echo $(pids_in_ns "$id"))"
}

stop_node_procs() { # <node> [hard]
  local n=$1 id
  id=$(node_ns "$n")
  [[ -n $id ]] && kill_ns "$id" "$n" "${2:-}"
  rm -f "$(nd "$n")/run/mntns" "$(nd "$n")/run/ready" "$(nd "$n")/run/sshd.pid"
  return 0
}

# Lab processes whose node record is lost (state dir deleted under a running lab,
# crash between start and record): find them by command line, kill their namespaces.
kill_orphans() {
  local f id ids=() hostns
  hostns=$(host_mntns)
  for f in $(grep -lasF -e "$LAB_HOME/node-init.sh" -e "$LAB_HOME/kubelet-lite.js" -e "$LAB_DIR/nodes/" \
               -e "--listen-peer-urls=https://$LAB_NET.1" /proc/[0-9]*/cmdline 2>/dev/null); do
    id=$(readlink "${f%/cmdline}/ns/mnt" 2>/dev/null) || continue
    [[ -n $id && $id != "$hostns" ]] && ids+=("$id")
  done
  ((${#ids[@]})) || return 0
  for id in $(printf '%s\n' "${ids[@]}" | sort -u); do
    log "killing leftover lab processes in $id"
    kill_ns "$id" "leftover $id" hard
  done
}

# ---------------------------------------------------------------- keys and certificates

# Key type of the lab's etcd PKI: rsa (RSA-2048, kubeadm's default) or ec (ECDSA P-256,
# kubeadm's encryptionAlgorithm ECDSA-P256). LAB_KEY picks it; a lab made with the other is
# recreated with a new PKI. A PKI from before the choice existed is P-256.
LAB_KEY="${LAB_KEY:-rsa}"
[[ $LAB_KEY == rsa || $LAB_KEY == ec ]] || die "LAB_KEY=$LAB_KEY: use rsa (kubeadm's default, RSA-2048) or ec (P-256)"
pki_key_type() { if [[ -s $PKI/ca.crt ]]; then cat "$PKI/key-type" 2>/dev/null || echo ec; fi; }
gen_key() {
  if [[ $LAB_KEY == rsa ]]; then openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null
  else openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; fi
  chmod 600 "$1"
}

# sign <out-prefix> <CN> <extendedKeyUsage> [subjectAltName]
sign() {
  local out=$1 cn=$2 eku=$3 san=${4:-} ext
  gen_key "$out.key"
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    echo "authorityKeyIdentifier=keyid"
    [[ -n $san ]] && echo "subjectAltName=$san"
  } >"$ext"
  openssl req -new -key "$out.key" -subj "/CN=$cn" 2>/dev/null |
    openssl x509 -req -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -days 365 -sha256 -extfile "$ext" -out "$out.crt" 2>/dev/null
  rm -f "$ext"
}

# Generated once, kept by `down`: bot SSH key, etcd CA, node certs, bot client cert, host keys.
ensure_keys() {
  umask 022
  mkdir -p "$LAB_DIR" "$PKI" "$BOT_DIR" "$HOSTKEYS"
  chmod 755 "$LAB_DIR"
  if [[ ! -s $BOT_KEY || ! -s $BOT_KEY.pub ]]; then
    rm -f "$BOT_KEY" "$BOT_KEY.pub"
    ssh-keygen -q -t ed25519 -N '' -C etcd-medic-lab-bot -f "$BOT_KEY"
  fi
  if [[ ! -s $PKI/ca.crt || ! -s $PKI/ca.key || $(pki_key_type) != "$LAB_KEY" ]]; then
    log "creating the etcd CA ($LAB_KEY)"
    rm -rf "${PKI:?}"/*
    gen_key "$PKI/ca.key"
    echo "$LAB_KEY" >"$PKI/key-type"
    openssl req -x509 -new -key "$PKI/ca.key" -subj /CN=etcd-ca -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" \
      -addext "subjectAltName=DNS:etcd-ca" -out "$PKI/ca.crt" 2>/dev/null
    rm -rf "${BOT_DIR:?}"/*
  fi
  local n ip d
  for n in "${NODES[@]}"; do
    ip=${NODE_IP[$n]}
    d="$PKI/$n"
    mkdir -p "$d"
    [[ -s $d/server.crt ]] || sign "$d/server" "$n" serverAuth,clientAuth "DNS:$n,DNS:localhost,IP:$ip,IP:127.0.0.1,IP:::1"
    # kubeadm's peer SANs: hostname, localhost, the advertise address, 127.0.0.1 and ::1 (a peer
    # cert of an older lab without ::1 is signed again, or every join regenerates it).
    { [[ -s $d/peer.crt ]] && openssl x509 -in "$d/peer.crt" -noout -ext subjectAltName 2>/dev/null | grep -q '0:0:0:0:0:0:0:1'; } ||
      sign "$d/peer" "$n" serverAuth,clientAuth "DNS:$n,DNS:localhost,IP:$ip,IP:127.0.0.1,IP:::1"
    [[ -s $d/healthcheck-client.crt ]] || sign "$d/healthcheck-client" kube-etcd-healthcheck-client clientAuth
    mkdir -p "$HOSTKEYS/$n"
    [[ -s $HOSTKEYS/$n/ssh_host_ed25519_key ]] ||
      { rm -f "$HOSTKEYS/$n"/ssh_host_ed25519_key*; ssh-keygen -q -t ed25519 -N '' -C "root@$n" -f "$HOSTKEYS/$n/ssh_host_ed25519_key"; }
  done
  [[ -s $BOT_DIR/etcd-client.crt ]] || sign "$BOT_DIR/etcd-client" etcd-medic clientAuth
  cp "$PKI/ca.crt" "$BOT_DIR/ca.crt"
}

fingerprint() { ssh-keygen -lf "$HOSTKEYS/$1/ssh_host_ed25519_key.pub" | awk '{print $2}'; }

# ---------------------------------------------------------------- node files

peer_url() { echo "https://${NODE_IP[$1]}:2380"; }

# <node> <file> <initial-cluster> <state or ""> <token or "">: the static pod manifest.
# An empty state or token leaves its flag out, as kubeadm init does.
write_manifest() {
  local n=$1 f=$2 initial=$3 state=$4 token=$5 ip=${NODE_IP[$1]} flags=""
  [[ -n $state ]] && flags+=$'\n'"    - --initial-cluster-state=$state"
  [[ -n $token ]] && flags+=$'\n'"    - --initial-cluster-token=$token"
  # What kubeadm (1.28+) adds for etcd 3.5: the initial corruption check and progress notifications.
  local extra=""
  if [[ $(lab_layout) == kubeadm && $(lab_version) != "$SYSTEM_ETCD" ]]; then
    extra=$'\n'"    - --experimental-initial-corrupt-check=true"$'\n'"    - --experimental-watch-progress-notify-interval=5s"
  fi
  cat >"$f" <<EOF
apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://$ip:2379
  creationTimestamp: null
  labels:
    component: etcd
    tier: control-plane
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://$ip:2379
    - --cert-file=$PKI_IN_NODE/server.crt
    - --client-cert-auth=true
    - --data-dir=/var/lib/etcd$extra
    - --initial-advertise-peer-urls=https://$ip:2380
    - --initial-cluster=$initial$flags
    - --key-file=$PKI_IN_NODE/server.key
    - --listen-client-urls=https://$ip:2379
    - --listen-metrics-urls=http://$ip:2381
    - --listen-peer-urls=https://$ip:2380
    - --log-outputs=stderr
    - --logger=zap
    - --name=$n
    - --peer-cert-file=$PKI_IN_NODE/peer.crt
    - --peer-client-cert-auth=true
    - --peer-key-file=$PKI_IN_NODE/peer.key
    - --peer-trusted-ca-file=$PKI_IN_NODE/ca.crt
    - --snapshot-count=10000
    - --trusted-ca-file=$PKI_IN_NODE/ca.crt
    image: registry.k8s.io/etcd:$(etcd_full_version)-0
    imagePullPolicy: IfNotPresent
    livenessProbe:
      failureThreshold: 8
      httpGet:
        host: $ip
        path: /health
        port: 2381
        scheme: HTTP
      initialDelaySeconds: 10
      periodSeconds: 10
      timeoutSeconds: 15
    name: etcd
    resources:
      requests:
        cpu: 100m
        memory: 100Mi
    volumeMounts:
    - mountPath: /var/lib/etcd
      name: etcd-data
    - mountPath: $PKI_IN_NODE
      name: etcd-certs
  hostNetwork: true
  priorityClassName: system-node-critical
  securityContext:
    seccompProfile:
      type: RuntimeDefault
  volumes:
  - hostPath:
      path: $PKI_IN_NODE
      type: DirectoryOrCreate
    name: etcd-certs
  - hostPath:
      path: /var/lib/etcd
      type: DirectoryOrCreate
    name: etcd-data
status: {}
EOF
}

write_sshd_config() { # <node>
  local n=$1 d
  d=$(nd "$n")
  cat >"$d/sshd_config" <<EOF
# sshd of lab node $n (runs in the node's mount namespace)
Port $LAB_SSH_PORT
ListenAddress ${NODE_IP[$n]}
HostKey $HOSTKEYS/$n/ssh_host_ed25519_key
PidFile $d/run/sshd.pid
PermitRootLogin prohibit-password
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile $BOT_KEY.pub
StrictModes no
UsePAM no
UseDNS no
PrintMotd no
AllowTcpForwarding yes
MaxStartups 100:30:200
MaxSessions 20
Subsystem sftp internal-sftp
# VERBOSE logs every session ("Starting session: command ..."): tests count what reached the node
LogLevel VERBOSE
EOF
}

create_node() { # <node> <token>
  local n=$1 d
  d=$(nd "$n")
  rm -rf "$d"
  mkdir -p "$d/etc-kubernetes/manifests" "$d/etc-kubernetes/pki/etcd" "$d/var-lib-etcd" \
    "$d/var-log-pods" "$d/var-log-containers" "$d/run" "$d/log"
  chmod 700 "$d/var-lib-etcd"
  # The node's own /root with Debian's default dotfiles: the host's (tool managers, tokens)
  # must not leak into, or slow down, the bot's SSH sessions.
  mkdir -p "$d/root" "$d/tmp" "$d/var-tmp"
  chmod 700 "$d/root"
  chmod 1777 "$d/tmp" "$d/var-tmp"
  cp /usr/share/base-files/dot.bashrc "$d/root/.bashrc" 2>/dev/null || cp /etc/skel/.bashrc "$d/root/.bashrc" 2>/dev/null || : >"$d/root/.bashrc"
  cp /usr/share/base-files/dot.profile "$d/root/.profile" 2>/dev/null || cp /etc/skel/.profile "$d/root/.profile" 2>/dev/null || : >"$d/root/.profile"
  cp "$PKI/ca.crt" "$PKI/ca.key" "$PKI/$n"/*.crt "$PKI/$n"/*.key "$d/etc-kubernetes/pki/etcd/"
  chmod 600 "$d/etc-kubernetes/pki/etcd/"*.key
  # static: all three members, new, one token. kubeadm: node1 bootstraps alone; the others get
  # their manifest when they join (join_member).
  local m initial=()
  if [[ $(lab_layout) == static ]]; then
    for m in "${NODES[@]}"; do initial+=("$m=$(peer_url "$m")"); done
    write_manifest "$n" "$d/etc-kubernetes/manifests/etcd.yaml" "$(IFS=,; echo "${initial[*]}")" new "$2"
  elif [[ $n == "${NODES[0]}" ]]; then
    write_manifest "$n" "$d/etc-kubernetes/manifests/etcd.yaml" "$n=$(peer_url "$n")" "" ""
  fi
  write_sshd_config "$n"
}

write_known_hosts() {
  local n tmp
  tmp="$KNOWN_HOSTS.tmp"
  : >"$tmp"
  for n in "${NODES[@]}"; do
    echo "[${NODE_IP[$n]}]:$LAB_SSH_PORT $(cut -d' ' -f1,2 "$HOSTKEYS/$n/ssh_host_ed25519_key.pub")" >>"$tmp"
  done
  mv "$tmp" "$KNOWN_HOSTS"
}

write_config() {
  local tmp="$CONFIG.tmp" n c
  {
    echo "# etcd-medic lab clusters, written by lab/lab.sh up ($(date -u +%Y-%m-%dT%H:%M:%SZ))."
    echo "# SSH key: $BOT_KEY   known_hosts: $KNOWN_HOSTS"
    echo "clusters:"
    for c in "$CLUSTER_NAME" "$CLUSTER_NAME-botcert"; do
      echo "  - name: $c"
      if [[ $c == "$CLUSTER_NAME" ]]; then
        echo "    description: etcd-medic lab, 3 kubeadm-style nodes on loopback (etcd auth with the nodes' healthcheck-client cert)"
      else
        echo "    description: the same lab nodes, etcd auth with the bot's own client cert"
      fi
      cat <<EOF
    channels: [CLAB00001, console]
    runtime: kubeadm-static-pod
    paths:
      manifest: /etc/kubernetes/manifests/etcd.yaml
      dataDir: /var/lib/etcd
      pki: $PKI_IN_NODE
    ssh:
      user: root
      connectTimeoutMs: 5000
      commandTimeoutMs: 30000
    etcd:
EOF
      if [[ $c == "$CLUSTER_NAME" ]]; then
        echo "      auth: { mode: node-healthcheck-client }"
      else
        echo "      auth: { mode: client-cert, ca: $BOT_DIR/ca.crt, cert: $BOT_DIR/etcd-client.crt, key: $BOT_DIR/etcd-client.key }"
      fi
      cat <<EOF
      callTimeoutMs: 3000
    access:
      read: { requesters: ['*'] }
      mutating: { requesters: ['*'], approvers: ['*'] }
      # '*' is refused for destructive approvals: the quickstart's console users and the tests' Slack users
      destructive: { requesters: ['*'], approvers: ['console:root', 'console:alice', 'console:bob', 'U0BOB', 'U0CAROL', 'U0ONCALL', 'U0LEAD', 'U0LEAD1', 'U0LEAD2', 'U0SRE1'] }
    nodes:
EOF
      for n in "${NODES[@]}"; do
        cat <<EOF
      - name: $n
        ssh: { host: ${NODE_IP[$n]}, port: $LAB_SSH_PORT, hostKey: "$(fingerprint "$n")" }
        clientUrl: https://${NODE_IP[$n]}:2379
        peerUrl: https://${NODE_IP[$n]}:2380
EOF
      done
    done
  } >"$tmp"
  mv "$tmp" "$CONFIG"
}

# ---------------------------------------------------------------- node lifecycle

launch_node() { # <node>: start its namespace in the background (no wait)
  local n=$1 d
  d=$(nd "$n")
  [[ -d $d/etc-kubernetes ]] || die "$n has no state in $d: run 'lab.sh up'"
  rm -f "$d/run/ready" "$d/run/mntns"
  mkdir -p /run/sshd /etc/kubernetes /var/lib/etcd /var/log/pods /var/log/containers
  local node_bin
  node_bin="$(command -v "${LAB_NODE_BIN:-node}")"
  (
    # The daemons must hold none of our fds: not the lock (fd 9), not a caller's pipe
    # (a test runner or $(...) would wait for its EOF forever).
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
    done
    etcd_bin=""
    [[ $(lab_version) == "$SYSTEM_ETCD" ]] || etcd_bin="$(bin_dir "$(lab_version)")/etcd"
    LAB_NODE_BIN="$node_bin" LAB_ETCD_BIN="$etcd_bin" exec setsid unshare --mount --propagation private --pid --mount-proc --uts --fork \
      bash "$LAB_HOME/node-init.sh" "$LAB_DIR" "$n"
  ) </dev/null >>"$d/log/node.log" 2>&1 &
}

node_ready() { [[ -f $(nd "$1")/run/ready ]] && node_running "$1" && sshd_up "$1"; }

wait_node_ready() {
  local n=$1
  wait_until 15 "$n to start (namespace, sshd on ${NODE_IP[$n]}:$LAB_SSH_PORT)" node_ready "$n" || {
    tail -n 20 "$(nd "$n")/log/node.log" "$(nd "$n")/log/sshd.log" >&2 2>/dev/null || true
    die "$n did not start"
  }
  # A namespace inode can be reused: drop stale records of other nodes equal to ours.
  local id m
  id=$(cat "$(nd "$n")/run/mntns")
  for m in "${NODES[@]}"; do
    [[ $m != "$n" && $(cat "$(nd "$m")/run/mntns" 2>/dev/null) == "$id" ]] && rm -f "$(nd "$m")/run/mntns"
  done
  return 0
}

check_ports_free() {
  local n ip port
  for n in "${NODES[@]}"; do
    ip=${NODE_IP[$n]}
    for port in "$LAB_SSH_PORT" 2379 2380; do
      ! port_open "$ip" "$port" || die "$ip:$port is already in use (another lab with a different LAB_DIR?)"
    done
  done
}

# ---------------------------------------------------------------- etcd versions

VERSION_FILE="$LAB_DIR/etcd-version"

# The version asked for: --etcd/LAB_ETCD, else the running lab's, else Debian's 3.4.
wanted_version() {
  local v=${LAB_ETCD:-}
  [[ -n $v ]] || v=$(cat "$VERSION_FILE" 2>/dev/null || true)
  [[ -n $v ]] || v=$SYSTEM_ETCD
  [[ $v == "$SYSTEM_ETCD" || $v =~ ^3\.[0-9]+\.[0-9]+$ ]] || die "etcd version '$v': use 3.4 (Debian's) or a full version such as 3.5.30"
  echo "$v"
}

LAYOUT_FILE="$LAB_DIR/layout"
wanted_layout() {
  local l=${LAB_LAYOUT:-}
  [[ -n $l ]] || l=$(cat "$LAYOUT_FILE" 2>/dev/null || true)
  [[ -n $l ]] || l=static
  [[ $l == static || $l == kubeadm ]] || die "layout '$l': use static or kubeadm"
  echo "$l"
}
lab_layout() { cat "$LAYOUT_FILE" 2>/dev/null || echo static; }

# The version this lab runs (recorded by up), 3.4 when none is.
lab_version() { cat "$VERSION_FILE" 2>/dev/null || echo "$SYSTEM_ETCD"; }

# Directory of etcd, etcdctl and etcdutl for version $1.
bin_dir() { if [[ $1 == "$SYSTEM_ETCD" ]]; then dirname "$(command -v etcd)"; else echo "$LAB_DIR/etcd/$1/usr/bin"; fi; }

# "3.4.23", "3.5.30": what `etcd --version` says of the lab's etcd.
etcd_full_version() {
  "$(bin_dir "$(lab_version)")/etcd" --version 2>/dev/null | awk '/^etcd Version:/{print $3; exit}'
}

apt_private() {
  apt-get -o Dir::Etc::SourceList="$LAB_APT_DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State::Lists="$LAB_APT_DIR/lists" -o Dir::Cache="$LAB_APT_DIR/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@"
}

# Debian's package version of etcd $1 in trixie/sid ("3.5.30-2"); empty when there is none.
package_version() {
  apt-cache -o Dir::Etc::SourceList="$LAB_APT_DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State::Lists="$LAB_APT_DIR/lists" -o Dir::Cache="$LAB_APT_DIR/cache" madison etcd-server 2>/dev/null \
    | awk -v v="$1" '{ gsub(/ /, "", $3); if (index($3, v "-") == 1 || index($3, v "+") == 1) { print $3; exit } }'
}

# etcd $1 unpacked under $LAB_DIR/etcd/$1 (etcd, etcdutl from etcd-server; etcdctl from etcd-client).
fetch_etcd() {
  local v=$1 dir="$LAB_DIR/etcd/$1" pv mirror keyring=/usr/share/keyrings/debian-archive-keyring.gpg deb
  [[ $v == "$SYSTEM_ETCD" ]] && return 0
  [[ -x $dir/usr/bin/etcd && -x $dir/usr/bin/etcdctl && -x $dir/usr/bin/etcdutl ]] && return 0
  mkdir -p "$LAB_APT_DIR/lists/partial" "$LAB_APT_DIR/cache/archives/partial" "$LAB_APT_DIR/debs"
  pv=$(package_version "$v")
  if [[ -z $pv ]]; then
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    printf 'deb [signed-by=%s] %s %s main\n' "$keyring" "$mirror" trixie "$keyring" "$mirror" sid >"$LAB_APT_DIR/sources.list"
    log "fetching Debian's package lists (trixie, sid) into $LAB_APT_DIR"
    apt_private -qq update >&2 || die "apt-get update of the private apt state in $LAB_APT_DIR failed"
    pv=$(package_version "$v")
    [[ -n $pv ]] || die "no Debian package of etcd $v in trixie or sid (there: $(apt-cache -o Dir::Etc::SourceList="$LAB_APT_DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$LAB_APT_DIR/lists" -o Dir::Cache="$LAB_APT_DIR/cache" madison etcd-server 2>/dev/null | awk '{print $3}' | tr '\n' ' '))"
  fi
  for deb in etcd-server etcd-client; do
    if ! compgen -G "$LAB_APT_DIR/debs/${deb}_${pv//:/%3a}_*.deb" >/dev/null; then
      log "downloading $deb $pv"
      (cd "$LAB_APT_DIR/debs" && apt_private -qq download "$deb=$pv" >&2) || die "apt-get download $deb=$pv failed"
    fi
  done
  rm -rf "$dir.part"; mkdir -p "$dir.part"
  for deb in "$LAB_APT_DIR"/debs/etcd-server_"${pv//:/%3a}"_*.deb "$LAB_APT_DIR"/debs/etcd-client_"${pv//:/%3a}"_*.deb; do
    dpkg -x "$deb" "$dir.part"
  done
  [[ -x $dir.part/usr/bin/etcd && -x $dir.part/usr/bin/etcdctl ]] || die "the packages of etcd $pv hold no usr/bin/etcd and etcdctl"
  [[ -x $dir.part/usr/bin/etcdutl ]] || log "note: etcd $pv ships no etcdutl"
  rm -rf "$dir"; mv "$dir.part" "$dir"
  log "etcd $v unpacked in $dir"
}

# ---------------------------------------------------------------- etcdctl from the host

host_etcdctl() {
  ETCDCTL_API=3 "$(bin_dir "$(lab_version)")/etcdctl" --endpoints="$(endpoints)" --cacert="$BOT_DIR/ca.crt" \
    --cert="$BOT_DIR/etcd-client.crt" --key="$BOT_DIR/etcd-client.key" \
    --dial-timeout=2s --command-timeout=5s "$@"
}

cluster_healthy() {
  local members
  host_etcdctl --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1 || return 1
  members=$(host_etcdctl --dial-timeout=1s --command-timeout=2s member list -w simple 2>/dev/null) || return 1
  [[ $(grep -c ', started, .*, false$' <<<"$members") == "${#NODES[@]}" ]]
}

# etcdctl against some nodes' endpoints only (the members that run so far).
etcdctl_at() { # <node,node...> args...
  local eps=() n ns; IFS=, read -ra ns <<<"$1"; shift
  for n in "${ns[@]}"; do eps+=("https://${NODE_IP[$n]}:2379"); done
  ETCDCTL_API=3 "$(bin_dir "$(lab_version)")/etcdctl" --endpoints="$(IFS=,; echo "${eps[*]}")" --cacert="$BOT_DIR/ca.crt" \
    --cert="$BOT_DIR/etcd-client.crt" --key="$BOT_DIR/etcd-client.key" \
    --dial-timeout=2s --command-timeout=5s "$@"
}

# Member id with peer URL $2, seen from nodes $1 ("" when there is none).
member_id_at() { etcdctl_at "$1" member list -w simple 2>/dev/null | awk -F', ' -v u="$2" '$4 == u {print $1; exit}'; }

members_healthy_at() { # <node,node...>: each endpoint healthy, each a started voter
  local members count
  etcdctl_at "$1" --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1 || return 1
  members=$(etcdctl_at "$1" --dial-timeout=1s --command-timeout=2s member list -w simple 2>/dev/null) || return 1
  count=$(tr ',' '\n' <<<"$1" | wc -l)
  [[ $(grep -c ', started, .*, false$' <<<"$members") == "$count" && $(grep -c . <<<"$members") == "$count" ]]
}

add_learner() { # <joined,...> <node>: member add --learner (3.5 refuses until every voter has been connected for 5 s)
  local out
  [[ -n $(member_id_at "$1" "$(peer_url "$2")") ]] && return 0
  out=$(etcdctl_at "$1" member add "$2" --learner --peer-urls="$(peer_url "$2")" 2>&1) && return 0
  [[ $out == *"already exists"* ]]
}

promote_learner() { # <joined,...> <node>: retried while etcd says the learner is not in sync yet
  local id
  id=$(member_id_at "$1" "$(peer_url "$2")")
  [[ -n $id ]] && etcdctl_at "$1" member promote "$id" >/dev/null 2>&1
}

# kubeadm join, for the control-plane node $2 with the nodes $1 already members: add it as a
# learner, write its manifest with the members known now and `existing`, let it start and sync,
# promote it.
join_member() {
  local joined=$1 n=$2 d m ms initial=()
  d=$(nd "$n")
  wait_until 30 "etcd to accept $n as a learner" add_learner "$joined" "$n" || die "member add $n was refused: $(etcdctl_at "$joined" member add "$n" --learner --peer-urls="$(peer_url "$n")" 2>&1 | tail -n1)"
  IFS=, read -ra ms <<<"$joined,$n"
  for m in "${ms[@]}"; do initial+=("$m=$(peer_url "$m")"); done
  write_manifest "$n" "$d/etc-kubernetes/manifests/etcd.yaml" "$(IFS=,; echo "${initial[*]}")" existing ""
  wait_until 30 "$n to sync and be promoted from learner" promote_learner "$joined" "$n" || die "$n's learner was not promoted"
  wait_until 30 "$joined,$n to be healthy voters" members_healthy_at "$joined,$n" || die "$n joined but the members are not healthy"
}

all_etcd_running() {
  local n
  for n in "${NODES[@]}"; do
    [[ -f $(manifest_path "$n") ]] && etcd_running "$n" || return 1
  done
}

all_nodes_up() {
  local n
  for n in "${NODES[@]}"; do node_running "$n" && sshd_up "$n" || return 1; done
}

# ---------------------------------------------------------------- commands

cmd_up() {
  while (($#)); do
    case "$1" in
      --etcd) [[ $# -ge 2 ]] || die "--etcd needs a version (3.4, 3.5.16, 3.5.30)"; LAB_ETCD=$2; shift 2 ;;
      --etcd=*) LAB_ETCD=${1#--etcd=}; shift ;;
      --layout) [[ $# -ge 2 ]] || die "--layout needs static or kubeadm"; LAB_LAYOUT=$2; shift 2 ;;
      --layout=*) LAB_LAYOUT=${1#--layout=}; shift ;;
      *) die "up: unknown option '$1' (up [--etcd VERSION] [--layout static|kubeadm])" ;;
    esac
  done
  require_root; require_tools; lock
  local t0=$SECONDS version layout
  version=$(wanted_version)
  layout=$(wanted_layout)
  fetch_etcd "$version"
  if [[ -d $LAB_DIR/nodes && $(lab_version) != "$version" ]]; then
    log "the lab runs etcd $(lab_version), etcd $version was asked for: recreating it"
    do_down
  fi
  if [[ -d $LAB_DIR/nodes && $(lab_layout) != "$layout" ]]; then
    log "the lab was formed $(lab_layout), $layout was asked for: recreating it"
    do_down
  fi
  if [[ -d $LAB_DIR/nodes && -n $(pki_key_type) && $(pki_key_type) != "$LAB_KEY" ]]; then
    log "the lab's PKI is $(pki_key_type), $LAB_KEY was asked for: recreating it with a new PKI"
    do_down
  fi
  if [[ -d $LAB_DIR/nodes ]]; then
    if all_nodes_up && all_etcd_running && { cluster_healthy || { sleep 1; cluster_healthy; } || { sleep 1; cluster_healthy; }; }; then
      ensure_keys; write_known_hosts; write_config
      log "lab already up and healthy"
      echo "$CONFIG"
      return 0
    fi
    log "lab state exists but is not up and healthy: recreating it"
    do_down
  else
    kill_orphans
  fi
  ensure_keys
  check_ports_free
  echo "$version" >"$VERSION_FILE"
  echo "$layout" >"$LAYOUT_FILE"
  local token n
  token="etcd-medic-lab-$(date +%s)"
  for n in "${NODES[@]}"; do create_node "$n" "$token"; done
  write_known_hosts
  write_config
  for n in "${NODES[@]}"; do launch_node "$n"; done
  for n in "${NODES[@]}"; do wait_node_ready "$n"; done
  if [[ $layout == kubeadm ]]; then
    local joined=${NODES[0]}
    wait_until "$UP_DEADLINE" "$joined to bootstrap the cluster alone" members_healthy_at "$joined" || die "$joined did not bootstrap (state kept in $LAB_DIR; 'lab.sh down' cleans up)"
    for n in "${NODES[@]:1}"; do join_member "$joined" "$n"; joined+=",$n"; done
  fi
  if ! wait_until "$UP_DEADLINE" "3 healthy etcd members" cluster_healthy; then
    host_etcdctl endpoint health >&2 2>&1 || true
    for n in "${NODES[@]}"; do
      log "--- $n kubelet-lite log"; tail -n 5 "$(nd "$n")/log/kubelet.log" >&2 2>/dev/null || true
      log "--- $n etcd log"; tail -n 10 "$(nd "$n")"/var-log-pods/*/etcd/*.log >&2 2>/dev/null || true
    done
    die "the lab cluster did not become healthy (state kept in $LAB_DIR for inspection; 'lab.sh down' cleans up)"
  fi
  log "lab up in $((SECONDS - t0))s on etcd $(etcd_full_version), formed $layout: $(endpoints)"
  echo "$CONFIG"
}

do_down() {
  local n
  # The data goes too: no need to be gentle.
  for n in "${NODES[@]}"; do stop_node_procs "$n" hard; done
  kill_orphans
  rm -rf "$LAB_DIR/nodes" "$CONFIG" "$KNOWN_HOSTS" "$VERSION_FILE" "$LAYOUT_FILE"
}

cmd_down() {
  require_root; lock
  do_down
  log "lab down"
}

cmd_purge() {
  require_root; lock
  do_down
  rm -rf "$LAB_DIR"
  log "lab purged ($LAB_DIR removed)"
}

cmd_status() {
  [[ -d $LAB_DIR/nodes ]] || { echo "lab is down (no $LAB_DIR/nodes)"; return 0; }
  local n ip pid sshd kub etcd ep manifest d
  for n in "${NODES[@]}"; do
    ip=${NODE_IP[$n]}; d=$(nd "$n")
    pid=$(node_init_pid "$n")
    if [[ -z $pid ]]; then
      printf '%s %s ns=down sshd=down kubelet=down etcd=down' "$n" "$ip"
    else
      sshd=down; sshd_up "$n" && sshd=up
      kub=down; [[ -n $(kubelet_pids "$n") ]] && kub=up
      ep=$(etcd_pids "$n" | head -n1)
      if [[ -n $ep ]]; then
        etcd="up(pid=$ep"; port_open "$ip" 2379 && etcd+=",client-port=open)" || etcd+=",client-port=closed)"
      else
        etcd=down
      fi
      printf '%s %s ns-pid=%s sshd=%s kubelet=%s etcd=%s' "$n" "$ip" "$pid" "$sshd" "$kub" "$etcd"
    fi
    manifest=absent
    [[ -f $d/etc-kubernetes/manifests/etcd.yaml ]] && manifest=present
    [[ -f $d/etc-kubernetes/etcd.yaml.lab-stopped ]] && manifest+=",lab-stopped"
    printf ' manifest=%s\n' "$manifest"
  done
  echo "--- endpoint health (host etcdctl, bot cert)"
  host_etcdctl --dial-timeout=1s --command-timeout=2s endpoint health 2>&1 || true
}

cmd_stop_node() {
  require_root; lock
  local n mode=; n=$(node_arg "${1:-}")
  [[ ${2:-} == --kill ]] && mode=hard
  [[ -d $(nd "$n") ]] || die "lab is down"
  if ! node_running "$n"; then log "$n is not running"; return 0; fi
  stop_node_procs "$n" "$mode"
  log "$n stopped${mode:+ (SIGKILL)}"
}

cmd_start_node() {
  require_root; require_tools; lock
  local n; n=$(node_arg "${1:-}")
  [[ -d $(nd "$n") ]] || die "lab is down: run 'lab.sh up'"
  if node_running "$n"; then
    sshd_up "$n" || die "$n is running but its sshd is not answering: stop-node it first"
    log "$n is already running"; return 0
  fi
  launch_node "$n"
  wait_node_ready "$n"
  log "$n started (etcd is started by kubelet-lite if its manifest is in place)"
}

manifest_path() { echo "$(nd "$1")/etc-kubernetes/manifests/etcd.yaml"; }
parked_path() { echo "$(nd "$1")/etc-kubernetes/etcd.yaml.lab-stopped"; }

do_stop_etcd() {
  local n=$1 m p
  m=$(manifest_path "$n"); p=$(parked_path "$n")
  if [[ -f $m ]]; then
    mv "$m" "$p"
  elif [[ ! -f $p ]]; then
    log "$n has no etcd manifest (neither manifests/etcd.yaml nor etcd.yaml.lab-stopped)"
  fi
  if node_running "$n"; then
    wait_until 15 "kubelet-lite on $n to stop etcd" etcd_gone "$n" || die "etcd on $n did not stop"
  fi
  return 0
}

container_links() { ls "$(nd "$1")/var-log-containers" 2>/dev/null | sort; }
container_started() { # <node> <links before>
  etcd_running "$1" || [[ -n $(comm -13 <(echo "$2") <(container_links "$1")) ]]
}

do_start_etcd() {
  local n=$1 m p before
  m=$(manifest_path "$n"); p=$(parked_path "$n")
  before=$(container_links "$n")
  if [[ -f $p ]]; then
    [[ -f $m ]] && die "$n has both manifests/etcd.yaml and etcd.yaml.lab-stopped: resolve by hand"
    mv "$p" "$m"
  elif [[ ! -f $m ]]; then
    die "$n has no etcd manifest to start (neither manifests/etcd.yaml nor etcd.yaml.lab-stopped)"
  fi
  if node_running "$n"; then
    # A new container log link shows kubelet-lite started etcd (it may crash at once: wiped data).
    wait_until 10 "kubelet-lite on $n to start etcd" container_started "$n" "$before" || die "etcd on $n did not start"
  else
    log "$n is stopped: etcd starts with start-node"
  fi
}

cmd_stop_etcd() {
  require_root; lock
  local n; n=$(node_arg "${1:-}")
  [[ -d $(nd "$n") ]] || die "lab is down"
  do_stop_etcd "$n"
  log "etcd on $n stopped (manifest at /etc/kubernetes/etcd.yaml.lab-stopped)"
}

cmd_start_etcd() {
  require_root; lock
  local n; n=$(node_arg "${1:-}")
  [[ -d $(nd "$n") ]] || die "lab is down"
  do_start_etcd "$n"
  log "etcd on $n started"
}

cmd_wipe_data() {
  require_root; lock
  local n d; n=$(node_arg "${1:-}"); d=$(nd "$n")
  [[ -d $d ]] || die "lab is down"
  do_stop_etcd "$n"
  find "$d/var-lib-etcd" -mindepth 1 -delete
  log "$n: /var/lib/etcd emptied"
  if [[ -f $(parked_path "$n") ]]; then do_start_etcd "$n"; fi
  log "$n: manifest back in place; etcd runs on empty data"
}

cmd_exec() {
  require_root
  local n pid; n=$(node_arg "${1:-}"); shift
  [[ ${1:-} == -- ]] && shift
  pid=$(node_init_pid "$n")
  [[ -n $pid ]] || die "$n is not running"
  (($#)) || set -- bash
  exec nsenter --target "$pid" --mount --pid -- "$@"
}

cmd_etcdctl() {
  [[ ${1:-} == -- ]] && shift
  [[ -s $BOT_DIR/etcd-client.crt ]] || die "no bot client cert yet: run 'lab.sh up'"
  host_etcdctl "$@"
}

main() {
  local cmd=${1:-}
  (($#)) && shift
  case "$cmd" in
    up) cmd_up "$@" ;;
    version) lab_version ;;
    layout) lab_layout ;;
    tools) bin_dir "$(lab_version)" ;;
    down) cmd_down ;;
    purge) cmd_purge ;;
    status) cmd_status ;;
    stop-node) cmd_stop_node "$@" ;;
    start-node) cmd_start_node "$@" ;;
    stop-etcd) cmd_stop_etcd "$@" ;;
    start-etcd) cmd_start_etcd "$@" ;;
    wipe-data) cmd_wipe_data "$@" ;;
    exec) cmd_exec "$@" ;;
    etcdctl) cmd_etcdctl "$@" ;;
    config) echo "$CONFIG" ;;
    ''|-h|--help|help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' ;;
    *) die "unknown command '$cmd' (try: lab.sh help)" ;;
  esac
}

main "$@"

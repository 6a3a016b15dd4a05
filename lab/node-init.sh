#!/usr/bin/env bash
# The "init" of one lab node. lab.sh starts it as
#   setsid unshare --mount --propagation private --pid --mount-proc --uts --fork bash node-init.sh <LAB_DIR> <node>
# so it runs in the node's own mount namespace, as pid 1 of the node's own pid namespace
# (ps on a node shows that node's processes only; when this exits, they all die). It makes the node's view
# (/etc/kubernetes, /var/lib/etcd, /var/log/pods, /var/log/containers are the
# node's own dirs, and so are /root, /tmp and /var/tmp; no etcdctl/etcdutl), then runs the node's sshd and kubelet-lite
# and waits. SIGTERM stops both.
set -euo pipefail

LAB_DIR=$1
NODE=$2
LAB_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ND="$LAB_DIR/nodes/$NODE"
NODE_BIN="${LAB_NODE_BIN:-node}"

say() { echo "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ) node-init[$NODE] $*"; }

# Belt and braces: unshare --propagation private already did this.
mount --make-rprivate /
# Own UTS namespace: the node's hostname is its name.
hostname "$NODE"

bind() { # <node dir> <path seen inside the node>
  mkdir -p "$2"
  mount --bind "$1" "$2"
}
bind "$ND/etc-kubernetes" /etc/kubernetes
bind "$ND/var-lib-etcd" /var/lib/etcd
bind "$ND/var-log-pods" /var/log/pods
bind "$ND/var-log-containers" /var/log/containers
# Node-private /root, /tmp, /var/tmp -- unless the lab itself lives there (it would vanish).
NODE_REAL="$(readlink -f "$(command -v "$NODE_BIN")")"
bind_private() { # <node dir> <path>
  local p
  for p in "$LAB_DIR" "$LAB_HOME" "$NODE_REAL"; do
    if [[ $p == "$2" || $p == "$2"/* ]]; then
      say "$2 is shared with the host: $p is inside it"
      return 0
    fi
  done
  bind "$1" "$2"
}
bind_private "$ND/root" /root
bind_private "$ND/tmp" /tmp
bind_private "$ND/var-tmp" /var/tmp

# Real control-plane nodes have no etcdctl/etcdutl on the host (they live in the etcd
# image). Hide them: an overlay over /usr/bin with whiteouts makes them truly absent
# (`command -v etcdctl` fails, running it gives "command not found", exit 127).
# Fallback: bind a stub that says so and exits 127.
hide_tools() {
  local ovl="$ND/usrbin-overlay"
  rm -rf "$ovl"
  mkdir -p "$ovl/upper" "$ovl/work"
  mknod "$ovl/upper/etcdctl" c 0 0
  mknod "$ovl/upper/etcdutl" c 0 0
  if mount -t overlay overlay -o "lowerdir=/usr/bin,upperdir=$ovl/upper,workdir=$ovl/work" /usr/bin 2>/dev/null; then
    say "etcdctl/etcdutl hidden (overlay on /usr/bin)"
    return
  fi
  say "overlayfs unavailable: binding a stub over etcdctl/etcdutl"
  local tool
  for tool in etcdctl etcdutl; do
    [[ -e /usr/bin/$tool ]] || continue
    printf '#!/bin/sh\necho "%s: command not found" >&2\nexit 127\n' "$tool" >"$ND/run/stub-$tool"
    chmod 755 "$ND/run/stub-$tool"
    mount --bind "$ND/run/stub-$tool" "/usr/bin/$tool"
  done
}
hide_tools

mkdir -p /run/sshd
chmod 755 /run/sshd

/usr/sbin/sshd -D -f "$ND/sshd_config" -E "$ND/log/sshd.log" </dev/null >>"$ND/log/node.log" 2>&1 &
sshd_pid=$!
"$NODE_BIN" "$LAB_HOME/kubelet-lite.js" --node "$NODE" --lab-dir "$LAB_DIR" </dev/null >>"$ND/log/kubelet.log" 2>&1 &
kubelet_pid=$!

stop() {
  say "stopping (sshd $sshd_pid, kubelet-lite $kubelet_pid)"
  kill -TERM "$sshd_pid" "$kubelet_pid" 2>/dev/null || true
  wait || true
  exit 0
}
trap stop TERM INT HUP

readlink /proc/self/ns/mnt >"$ND/run/mntns"
say "up: mntns $(cat "$ND/run/mntns"), sshd pid $sshd_pid, kubelet-lite pid $kubelet_pid"
touch "$ND/run/ready"
wait || true
say "sshd and kubelet-lite have exited"

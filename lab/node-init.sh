#!/usr/bin/env bash
# The "init" of one lab node. lab.sh starts it as
#   setsid unshare --mount --propagation private --fork bash node-init.sh <LAB_DIR> <node>
# so it runs in the node's own mount namespace. It makes the node's view
# (/etc/kubernetes, /var/lib/etcd, /var/log/pods, /var/log/containers are the
# node's own dirs; no etcdctl/etcdutl), then runs the node's sshd and kubelet-lite
# and waits. SIGTERM stops both.
set -euo pipefail

LAB_DIR=$1
NODE=$2
LAB_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ND="$LAB_DIR/nodes/$NODE"
NODE_BIN="${LAB_NODE_BIN:-node}"

echo $$ >"$ND/run/init.pid"
say() { echo "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ) node-init[$NODE] $*"; }

# Belt and braces: unshare --propagation private already did this.
mount --make-rprivate /

bind() { # <node dir> <path seen inside the node>
  mkdir -p "$2"
  mount --bind "$1" "$2"
}
bind "$ND/etc-kubernetes" /etc/kubernetes
bind "$ND/var-lib-etcd" /var/lib/etcd
bind "$ND/var-log-pods" /var/log/pods
bind "$ND/var-log-containers" /var/log/containers

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

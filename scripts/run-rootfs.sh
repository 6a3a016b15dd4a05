#!/usr/bin/env bash
# Runs the image's root filesystem (made by scripts/build-image.sh) the way a container
# runtime would, for machines where none works (here crun can't set the container's rlimits):
# own mount and PID namespaces, the root filesystem read-only, tmpfs /tmp, chroot, uid/gid
# 10001, the Containerfile's ENV and ENTRYPOINT; the host's network. As root:
#   scripts/run-rootfs.sh [-v HOST_DIR:CONTAINER_DIR[:ro]]... [-e VAR=VALUE]... [--] [ARGS...]
# Environment: IMAGE_DIR (default /var/tmp/etcd-medic-image).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${IMAGE_DIR:-/var/tmp/etcd-medic-image}/rootfs
[[ -x $ROOT/usr/bin/node ]] || { echo "run-rootfs: no root filesystem in $ROOT: run scripts/build-image.sh" >&2; exit 1; }
vols=(); envs=()
while (($#)); do
  case $1 in
    -v) vols+=("$2"); shift 2 ;;
    -e) envs+=("$2"); shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
# The Containerfile's ENV (KEY=VALUE words, continued lines) and ENTRYPOINT, as a runtime reads them.
mapfile -t image_env < <(awk '/^ENV /{on=1; sub(/^ENV /,"")} on{c=/\\$/; sub(/\\$/,""); n=split($0,w," "); for(i=1;i<=n;i++) if (w[i] ~ /=/) print w[i]; if(!c) on=0}' "$here/deploy/Containerfile")
workdir=$(sed -n 's/^WORKDIR \(.*\)$/\1/p' "$here/deploy/Containerfile")
entry=$(sed -n 's/^ENTRYPOINT \[\(.*\)\]$/\1/p' "$here/deploy/Containerfile" | tr -d '"' | tr ',' ' ')
[[ -n $entry ]] || { echo "run-rootfs: no ENTRYPOINT in deploy/Containerfile" >&2; exit 1; }
for v in "${vols[@]}"; do
  IFS=: read -r src dst mode <<<"$v"
  [[ -d $src && $dst == /* && -d $ROOT$dst ]] || { echo "run-rootfs: -v $v: both must be directories (and $dst must exist in the image)" >&2; exit 2; }
done
export ROOT
exec unshare --mount --pid --fork --propagation private bash -c '
  set -euo pipefail
  mount --bind "$ROOT" "$ROOT"
  mount -t proc proc "$ROOT/proc"
  mount -t tmpfs -o mode=1777,size=256m tmpfs "$ROOT/tmp"
  for d in null zero random urandom; do mount --bind /dev/$d "$ROOT/dev/$d" 2>/dev/null || { touch "$ROOT/dev/$d" 2>/dev/null; mount --bind /dev/$d "$ROOT/dev/$d"; }; done
  mount --bind /etc/resolv.conf "$ROOT/etc/resolv.conf"
  n=$1; shift
  for ((i = 0; i < n; i++)); do
    IFS=: read -r src dst mode <<<"$1"; shift
    mount --bind "$src" "$ROOT$dst"
    [[ ${mode:-} == ro ]] && mount -o remount,bind,ro "$ROOT$dst"
  done
  mount -o remount,bind,ro "$ROOT"
  m=$1; shift
  envs=(); for ((i = 0; i < m; i++)); do envs+=("$1"); shift; done
  wd=$1; shift
  entry=$1; shift
  exec chroot --userspec=10001:10001 "$ROOT" /usr/bin/env -i -C "$wd" PATH=/usr/local/bin:/usr/bin:/bin HOME=/var/lib/etcd-medic "${envs[@]}" $entry "$@"
' run-rootfs "${#vols[@]}" "${vols[@]}" "$((${#image_env[@]} + ${#envs[@]}))" "${image_env[@]}" "${envs[@]}" "${workdir:-/}" "$entry" "$@"

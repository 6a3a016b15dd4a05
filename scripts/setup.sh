#!/usr/bin/env bash
# Installs what etcd-medic, its lab and its tests need on a Debian/Ubuntu machine (as root),
# then builds. Idempotent: what is already there is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v etcd >/dev/null        || need+=(etcd-server)
command -v etcdctl >/dev/null     || need+=(etcd-client)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null  || need+=(openssh-client)
command -v redis-server >/dev/null || need+=(redis-server)
command -v openssl >/dev/null     || need+=(openssl)
command -v nsenter >/dev/null     || need+=(util-linux)
command -v pgrep >/dev/null       || need+=(procps)
command -v prometheus >/dev/null  || need+=(prometheus)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "setup: building"
npm run -s build

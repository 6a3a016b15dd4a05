#!/usr/bin/env bash
# Builds etcd-medic's OCI image without a Docker engine or a registry (as root):
#   1. a Debian trixie root filesystem: debootstrap --variant=minbase with nodejs (20.x) and
#      ca-certificates; etcdctl and etcdutl from trixie's etcd-client and etcd-server (3.5.16,
#      binaries only; no etcd server in the image);
#   2. the bot, built here (tsc), with its production node_modules (npm ci --omit=dev);
#   3. the user etcd-medic (uid/gid 10001) owning /var/lib/etcd-medic; apt caches removed;
#   4. deploy/Containerfile (FROM scratch over that tree) built with buildah (vfs storage),
#      pushed to an OCI archive for `skopeo copy` / `podman load` into your registry.
# Output in IMAGE_DIR (default /var/tmp/etcd-medic-image): rootfs/ (scripts/run-rootfs.sh runs
# it where no container runtime works), rootfs.tar, etcd-medic-<version>.oci.tar.
# Environment: IMAGE_DIR, DEBIAN_MIRROR (default: the mirror apt uses), SKIP_BUILDAH=1 (the
# tree only: no rootfs.tar, no image; what test/image-e2e.test.ts needs).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "build-image: run as root (debootstrap, chroot)" >&2; exit 1; }
for t in debootstrap; do command -v $t >/dev/null || { echo "build-image: needs $t (apt-get install debootstrap buildah)" >&2; exit 1; }; done
VERSION=$(node -p 'require("./package.json").version')
OUT=${IMAGE_DIR:-/var/tmp/etcd-medic-image}
ROOT=$OUT/rootfs
MIRROR=${DEBIAN_MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || echo http://deb.debian.org/debian)}
log() { echo "build-image: $*" >&2; }
mkdir -p "$OUT"

if [[ ! -x $ROOT/usr/bin/node ]]; then
  log "debootstrap trixie (minbase + nodejs, ca-certificates) into $ROOT from $MIRROR"
  rm -rf "$ROOT.part"
  debootstrap --variant=minbase --include=nodejs,ca-certificates trixie "$ROOT.part" "$MIRROR" >"$OUT/debootstrap.log" 2>&1 \
    || { tail -n 20 "$OUT/debootstrap.log" >&2; exit 1; }
  rm -rf "$ROOT"; mv "$ROOT.part" "$ROOT"
fi

if [[ ! -x $ROOT/usr/local/bin/etcdutl ]]; then
  log "etcdctl and etcdutl from trixie's etcd-client and etcd-server"
  x=$(mktemp -d)
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  chroot "$ROOT" sh -c 'cd /tmp && apt-get -qq update && apt-get -qq download etcd-client etcd-server' >&2
  for deb in "$ROOT"/tmp/etcd-client_*.deb "$ROOT"/tmp/etcd-server_*.deb; do dpkg -x "$deb" "$x"; done
  install -m 0755 "$x/usr/bin/etcdctl" "$x/usr/bin/etcdutl" "$ROOT/usr/local/bin/"
  rm -rf "$x" "$ROOT"/tmp/*.deb
fi

log "building the bot and its production node_modules"
npm run -s build
# Production modules, kept per lockfile: an unchanged lockfile reuses the last install.
lock=$(sha256sum package-lock.json | cut -c1-16)
modules=$OUT/modules-$lock
if [[ ! -d $modules/node_modules ]]; then
  rm -rf "$OUT"/modules-*
  mkdir -p "$modules.part"
  cp package.json package-lock.json "$modules.part/"
  (cd "$modules.part" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
  mv "$modules.part" "$modules"
fi
rm -rf "$ROOT/opt/etcd-medic"; mkdir -p "$ROOT/opt/etcd-medic/dist"
cp -r dist/src dist/commands "$ROOT/opt/etcd-medic/dist/"
# Hard links from the cache (same filesystem): the tree and the cache share the files.
cp -al "$modules/node_modules" "$ROOT/opt/etcd-medic/node_modules" 2>/dev/null || cp -r "$modules/node_modules" "$ROOT/opt/etcd-medic/"
cp package.json README.md "$ROOT/opt/etcd-medic/"

grep -q '^etcd-medic:' "$ROOT/etc/group" || echo 'etcd-medic:x:10001:' >>"$ROOT/etc/group"
grep -q '^etcd-medic:' "$ROOT/etc/passwd" || echo 'etcd-medic:x:10001:10001:etcd-medic:/var/lib/etcd-medic:/usr/sbin/nologin' >>"$ROOT/etc/passwd"
mkdir -p "$ROOT/var/lib/etcd-medic/snapshots" "$ROOT/etc/etcd-medic"
chown -R 10001:10001 "$ROOT/var/lib/etcd-medic"; chmod 0700 "$ROOT/var/lib/etcd-medic"
chroot "$ROOT" apt-get -qq clean
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/tmp/* "$ROOT/etc/resolv.conf"
: >"$ROOT/etc/resolv.conf"
log "the image holds: $(chroot "$ROOT" node --version) node, $(chroot "$ROOT" etcdctl version | head -n1), $(chroot "$ROOT" etcdutl version | head -n1)"

if [[ ${SKIP_BUILDAH:-} != 1 ]]; then
  tar -C "$ROOT" --numeric-owner -cf "$OUT/rootfs.tar" .
  command -v buildah >/dev/null || { log "no buildah: rootfs.tar made, image not (apt-get install buildah)"; exit 0; }
  cp deploy/Containerfile "$OUT/Containerfile"
  buildah --storage-driver vfs bud -q -t "localhost/etcd-medic:$VERSION" -f "$OUT/Containerfile" "$OUT" >&2
  rm -f "$OUT/etcd-medic-$VERSION.oci.tar"
  buildah --storage-driver vfs push -q "localhost/etcd-medic:$VERSION" "oci-archive:$OUT/etcd-medic-$VERSION.oci.tar:etcd-medic:$VERSION" >&2
  log "image localhost/etcd-medic:$VERSION; OCI archive $OUT/etcd-medic-$VERSION.oci.tar ($(du -h "$OUT/etcd-medic-$VERSION.oci.tar" | cut -f1))"
fi
log "root filesystem $ROOT"

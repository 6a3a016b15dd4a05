#!/usr/bin/env bash
# Prints the path of <binary> from Debian <package> (trixie or sid: the newest there),
# fetched with apt-get download into a private apt state and unpacked with dpkg -x, never
# installed over the system's (as lab/lab.sh fetches etcd). Cached: the next call is instant.
#   scripts/debian-tool.sh kustomize kustomize
#   scripts/debian-tool.sh kubernetes-client kubectl
# Environment: LAB_APT_DIR (default /var/cache/etcd-medic-apt).
set -euo pipefail
pkg=${1:?usage: debian-tool.sh <package> <binary>}
bin=${2:?usage: debian-tool.sh <package> <binary>}
[[ $pkg =~ ^[a-z0-9][a-z0-9.+-]*$ && $bin =~ ^[A-Za-z0-9._-]+$ ]] || { echo "debian-tool: bad package or binary name" >&2; exit 2; }
A=${LAB_APT_DIR:-/var/cache/etcd-medic-apt}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
opts=(-o Dir::Etc::SourceList="$A/sources.list" -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$A/lists" -o Dir::Cache="$A/cache")
newest() { apt-cache "${opts[@]}" madison "$pkg" 2>/dev/null | awk '{ gsub(/ /, "", $3); print $3 }' | sort -V | tail -n1; }
cached=$(ls -d "$A/tools/$pkg"_*/ 2>/dev/null | sort -V | tail -n1 || true)
if [[ -n $cached && -x ${cached}usr/bin/$bin ]]; then echo "${cached}usr/bin/$bin"; exit 0; fi
mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/debs" "$A/tools"
v=$(newest)
if [[ -z $v ]]; then
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  printf 'deb [signed-by=%s] %s %s main\n' "$keyring" "$mirror" trixie "$keyring" "$mirror" sid >"$A/sources.list"
  echo "debian-tool: fetching Debian's package lists (trixie, sid) into $A" >&2
  apt-get "${opts[@]}" -o Debug::NoLocking=1 -o APT::Sandbox::User=root -qq update >&2
  v=$(newest)
fi
[[ -n $v ]] || { echo "debian-tool: no package $pkg in trixie or sid" >&2; exit 1; }
(cd "$A/debs" && apt-get "${opts[@]}" -o Debug::NoLocking=1 -o APT::Sandbox::User=root -qq download "$pkg=$v" >&2)
dir="$A/tools/${pkg}_${v//[:~]/_}"
rm -rf "$dir.part"; mkdir -p "$dir.part"
dpkg -x "$(ls "$A/debs/${pkg}_${v//:/%3a}"_*.deb | head -n1)" "$dir.part"
[[ -x $dir.part/usr/bin/$bin ]] || { echo "debian-tool: $pkg $v has no usr/bin/$bin" >&2; exit 1; }
rm -rf "$dir"; mv "$dir.part" "$dir"
echo "$dir/usr/bin/$bin"

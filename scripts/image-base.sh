#!/usr/bin/env bash
# The image's base: a Debian 13 (trixie) minbase root filesystem made here with
# debootstrap and imported into podman, since no container registry is reachable.
# The mirror is the one the machine's own apt sources name (never a host written
# into the repo). Cached: a second run returns at once while the tag exists and
# the stamp is newer than this script.
#   usage: scripts/image-base.sh [TAG]      (default: localhost/podvisor-base:trixie)
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${1:-localhost/podvisor-base:trixie}
suite=trixie
stamp=.stamps/image-base
if [[ -e $stamp && $stamp -nt "$0" ]] && podman image exists "$tag"; then
  exit 0
fi

# The first non-security Debian archive URI in the machine's apt sources
# (deb822 .sources files first, then the one-line sources.list format).
apt_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -e $f ]] || continue
    awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -e $f ]] || continue
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }' "$f"
  done
}
mirror=$(apt_mirror | grep -v -- '-security' | grep -E '^https?://' | head -n 1 || true)
security=$(apt_mirror | grep -- '-security' | grep -E '^https?://' | head -n 1 || true)
if [[ -z $mirror ]]; then
  echo "image-base: no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list" >&2
  exit 1
fi

rootfs=$(mktemp -d /var/tmp/podvisor-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
chmod 755 "$rootfs" # it becomes the image's /
echo "image-base: debootstrap --variant=minbase $suite from $mirror"
start=$SECONDS
debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
  tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"
# Slim, as Debian's own -slim images are: no apt lists, caches, docs or man pages.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
# The container's apt uses the same mirror as the machine (plain HTTP works).
{
  printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror" "$suite" "$suite"
  [[ -z $security ]] || printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$security" "$suite"
} >"$rootfs/etc/apt/sources.list.d/debian.sources"
rm -f "$rootfs/etc/apt/sources.list"
tar --numeric-owner -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
mkdir -p "$(dirname "$stamp")"
touch "$stamp"
echo "image-base: $tag imported in $((SECONDS - start)) s"

#!/usr/bin/env bash
# Builds the podvisor test guest, test/guest/.cache/guest.qcow2: a 64 MiB
# MBR disk with one FAT partition holding syslinux, the newest installed Debian
# kernel and a busybox initramfs that runs the whole guest (see README.md for
# what it does). Nothing is mounted: the FAT image is filled with mtools and
# syslinux's mtools-based installer, then dd-ed into the disk at its offset.
# The initramfs also holds dhcpcd (the guest's DHCPv6 client) with the shared
# libraries it links, copied as initramfs-tools' copy_exec does.
# The build is reproducible (same inputs, same bytes) and cached: it is redone
# only when the hash of its inputs (this script, rootfs/, syslinux.cfg and the
# versions of the Debian packages used) differs from .cache/guest.stamp.
#
# Needs these Debian packages (it checks, it never installs them):
#   linux-image-amd64 busybox-static syslinux syslinux-common mtools
#   dosfstools cpio kmod fdisk qemu-utils dhcpcd-base
#
# Environment: PODVISOR_GUEST_CACHE overrides the cache directory.
# Prints one line: whether it reused or rebuilt the image, and how long it took.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${PODVISOR_GUEST_CACHE:-$here/.cache}
out=$cache/guest.qcow2
stamp=$cache/guest.stamp
started=$(date +%s%N)

# Modules the guest loads; their dependencies are resolved below. PACKET and
# UNIX are built into the Debian kernel, so udhcpc needs no af_packet.
modules=(
  virtio_pci virtio_blk virtio_net
  sr_mod cdrom isofs ata_piix ahci
  vfat nls_cp437 nls_ascii
  button evdev
)
disk_mib=64
part_start=2048 # sectors of 512 bytes: the partition starts at 1 MiB
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
export MTOOLS_SKIP_CHECK=1 LC_ALL=C TZ=UTC

die() {
  echo "guest build: $*" >&2
  exit 1
}

elapsed() {
  local ns=$(($(date +%s%N) - started))
  printf '%d.%01d s' $((ns / 1000000000)) $((ns % 1000000000 / 100000000))
}

# --- tools -------------------------------------------------------------------
missing=()
need_cmd() { # command package
  command -v "$1" > /dev/null 2>&1 || missing+=("$2 (no $1)")
}
need_file() { # path package
  [ -e "$1" ] || missing+=("$2 (no $1)")
}
need_cmd dpkg-query dpkg
need_cmd syslinux syslinux
need_file /usr/lib/syslinux/mbr/mbr.bin syslinux-common
need_cmd mcopy mtools
need_cmd mkfs.vfat dosfstools
need_cmd cpio cpio
need_cmd depmod kmod
need_cmd modprobe kmod
need_cmd sfdisk fdisk
need_cmd qemu-img qemu-utils
need_cmd ldd libc-bin
need_file /usr/sbin/dhcpcd dhcpcd-base
kernel=$(ls -1 /boot/vmlinuz-* 2> /dev/null | sort -V | tail -n 1 || true)
kver=${kernel#/boot/vmlinuz-}
if [ -z "$kernel" ]; then
  missing+=("linux-image-amd64 (no /boot/vmlinuz-*)")
elif [ ! -d "/lib/modules/$kver/kernel" ]; then
  missing+=("linux-image-amd64 (no /lib/modules/$kver/kernel)")
fi
busybox_version=$(dpkg-query -W -f '${Version}' busybox-static 2> /dev/null || true)
if [ -z "$busybox_version" ] || [ ! -x /bin/busybox ]; then
  missing+=("busybox-static (no static /bin/busybox)")
fi
if [ ${#missing[@]} -gt 0 ]; then
  printf 'guest build: missing Debian package: %s\n' "${missing[@]}" >&2
  die "install them with: apt-get install -y linux-image-amd64 busybox-static syslinux syslinux-common mtools dosfstools cpio kmod fdisk qemu-utils dhcpcd-base"
fi

# --- cache -------------------------------------------------------------------
pkg_version() { # package: its installed version, or "absent"
  dpkg-query -W -f '${Version}' "$1" 2> /dev/null || echo absent
}
kernel_pkg=$(dpkg-query -S "$kernel" 2> /dev/null | cut -d: -f1 || true)
hash=$(
  {
    echo "kernel $kver ${kernel_pkg:-unpackaged} $(pkg_version "${kernel_pkg:-none}")"
    # dhcpcd-base and libc6: their files are copied into the initramfs.
    for p in busybox-static syslinux syslinux-common mtools dosfstools cpio kmod fdisk qemu-utils dhcpcd-base libc6; do
      echo "package $p $(pkg_version "$p")"
    done
    echo "epoch $SOURCE_DATE_EPOCH"
    cd "$here"
    sha256sum build.sh syslinux.cfg
    find rootfs \( -type f -o -type l \) -printf '%p %m %l\n' | sort
    find rootfs -type f -print0 | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-64
)

mkdir -p "$cache"
exec 9> "$cache/build.lock"
flock 9 # a concurrent build of the same cache waits, then reuses
if [ -f "$out" ] && [ "$(cat "$stamp" 2> /dev/null)" = "$hash" ]; then
  echo "guest: reused $out (inputs ${hash:0:12}) in $(elapsed)"
  exit 0
fi

work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- modules -----------------------------------------------------------------
# The kernel .deb ships no modules.dep: depmod a staging tree that links to the
# installed modules, then ask modprobe for each module's load order.
staging=$work/modstage
mkdir -p "$staging/lib/modules/$kver"
ln -s "/lib/modules/$kver/kernel" "$staging/lib/modules/$kver/kernel"
for f in modules.order modules.builtin modules.builtin.modinfo; do
  [ -f "/lib/modules/$kver/$f" ] && cp "/lib/modules/$kver/$f" "$staging/lib/modules/$kver/"
done
depmod -b "$staging" "$kver"

root=$work/initramfs
mkdir -p "$root/lib/modules"
for m in "${modules[@]}"; do
  modprobe -d "$staging" -S "$kver" --show-depends "$m" ||
    die "module $m not found for kernel $kver"
done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' | while read -r ko; do
  name=${ko##*/}
  case "$name" in
    *.ko.xz) xz -dc "$ko" > "$root/lib/modules/${name%.xz}" && name=${name%.xz} ;;
    *.ko.zst) zstd -qdc "$ko" > "$root/lib/modules/${name%.zst}" && name=${name%.zst} ;;
    *) cp "$ko" "$root/lib/modules/$name" ;;
  esac
  echo "/lib/modules/$name"
done > "$root/lib/modules/load.list"
module_count=$(wc -l < "$root/lib/modules/load.list")

# --- initramfs ---------------------------------------------------------------
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,mnt,root,var/log}
chmod 1777 "$root/tmp"
cp -a "$here/rootfs/." "$root/"
cp /bin/busybox "$root/bin/busybox"
# One link per applet, except where rootfs/ ships a file of that name.
/bin/busybox --list-full | while read -r applet; do
  [ -e "$root/$applet" ] || [ -L "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
ln -s /bin/busybox "$root/init"
# copy_exec BINARY: the binary and every shared library ldd lists (and the ELF
# interpreter), each at its own path, so the dynamic loader finds them.
copy_exec() {
  local f
  for f in "$1" $(ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
  done
}
copy_exec /usr/sbin/dhcpcd
# The privilege-separation user's home, where dhcpcd chroots (rootfs/etc/passwd).
mkdir -p "$root/usr/lib/dhcpcd"
# init needs /dev/console before rcS mounts devtmpfs.
mknod -m 600 "$root/dev/console" c 5 1
mknod -m 666 "$root/dev/null" c 1 3
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
(cd "$root" && find . -mindepth 1 -print0 | sort -z |
  cpio --null --reproducible -o -H newc -R 0:0 --quiet) | gzip -9n > "$work/initrd.img"

# --- FAT partition with syslinux ---------------------------------------------
part_sectors=$((disk_mib * 2048 - part_start))
part=$work/part.img
cp "$kernel" "$work/vmlinuz"
cp "$here/syslinux.cfg" "$work/syslinux.cfg"
touch -d "@$SOURCE_DATE_EPOCH" "$work/vmlinuz" "$work/initrd.img" "$work/syslinux.cfg"
mkfs.vfat --invariant -C -h "$part_start" -n PODVISOR "$part" $((part_sectors / 2)) > /dev/null
mcopy -m -i "$part" "$work/vmlinuz" "$work/initrd.img" "$work/syslinux.cfg" ::/
syslinux --install "$part"

# --- disk --------------------------------------------------------------------
disk=$work/disk.raw
truncate -s "${disk_mib}M" "$disk"
# A fixed label-id keeps the image reproducible (sfdisk picks a random one).
printf 'label: dos\nlabel-id: 0x706f6476\nstart=%d, size=%d, type=c, bootable\n' \
  "$part_start" "$part_sectors" | sfdisk --quiet "$disk"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$part" of="$disk" bs=512 seek="$part_start" conv=notrunc status=none
qemu-img convert -f raw -O qcow2 "$disk" "$work/guest.qcow2"

mv -f "$work/guest.qcow2" "$out"
echo "$hash" > "$stamp"
size=$(du -k "$out" | cut -f1)
echo "guest: rebuilt $out (inputs ${hash:0:12}, kernel $kver, $module_count modules, ${size} KiB) in $(elapsed)"

#!/usr/bin/env bash
# build-test-image.sh builds build/images/kiln-test-guest.qcow2, the tiny guest
# that kiln's real-component tests boot: the current Debian 12 kernel and a
# busybox initramfs (init in scripts/testguest/) on a syslinux FAT disk,
# converted to qcow2. Everything comes from Debian packages (apt-get download).
#
# Idempotent: the image is rebuilt only when one of its inputs changes (this
# script, scripts/testguest/*, the kernel or busybox package version). Work
# files live in build/test-image/.
#
# Environment:
#   KILN_TEST_KERNEL_PKG  kernel package to use (default: what linux-image-amd64 depends on)
#   KILN_TEST_IMAGE       output path (default: build/images/kiln-test-guest.qcow2)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
guest=$root/scripts/testguest
work=$root/build/test-image
out=${KILN_TEST_IMAGE:-$root/build/images/kiln-test-guest.qcow2}

say() { echo "build-test-image: $*" >&2; }
die() { say "error: $*"; exit 1; }

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || die "not root and no sudo: cannot install missing packages"
	sudo=sudo
fi

# Host tools, installed when missing (CI starts from a fresh machine).
tools=(dpkg apt cpio gzip dosfstools mtools syslinux syslinux-common qemu-utils)
missing=()
for p in "${tools[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	say "installing ${missing[*]}"
	$sudo apt-get update -q
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# candidate prints the version apt would install for package $1.
candidate() { apt-cache show --no-all-versions "$1" 2>/dev/null | awk '/^Version:/ { print $2; exit }'; }

kpkg=${KILN_TEST_KERNEL_PKG:-}
resolve_kernel() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-amd64$/ { print $2; exit }'
}
if [ -z "$kpkg" ]; then
	kpkg=$(resolve_kernel || true)
	if [ -z "$kpkg" ]; then
		say "apt lists have no linux-image-amd64; running apt-get update"
		$sudo apt-get update -q
		kpkg=$(resolve_kernel || true)
	fi
	[ -n "$kpkg" ] || die "cannot resolve the kernel package behind linux-image-amd64"
fi
kver=$(candidate "$kpkg")
bver=$(candidate busybox-static)
[ -n "$kver" ] || die "no version of $kpkg in the apt lists"
[ -n "$bver" ] || die "no version of busybox-static in the apt lists"
krel=${kpkg#linux-image-} # e.g. 6.1.0-56-amd64, the name of its modules directory

# The stamp names every input; equal stamp and an existing image mean up to date.
stamp=$( {
	echo "kernel $kpkg $kver"
	echo "busybox-static $bver"
	sha256sum "$0" "$guest"/* | sed "s|  $root/|  |"
} | sha256sum | cut -d' ' -f1)
if [ -f "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
	say "up to date: $out"
	exit 0
fi
say "building $out from $kpkg $kver and busybox-static $bver"

mkdir -p "$work/debs" "$(dirname "$out")"
cd "$work/debs"
# apt-get download drops privileges to _apt, which cannot write to a root-owned dir.
aptopts=()
[ "$(id -u)" -eq 0 ] && aptopts=(-o APT::Sandbox::User=root)
for pv in "$kpkg=$kver" "busybox-static=$bver"; do
	p=${pv%%=*}
	v=${pv#*=}
	[ -f "${p}_${v//:/%3a}_amd64.deb" ] && continue # apt-get download's file name
	rm -f "${p}"_*.deb
	apt-get "${aptopts[@]}" download -q "$pv" || {
		$sudo apt-get update -q
		apt-get "${aptopts[@]}" download -q "$pv"
	}
done
kdeb=$(ls "$work/debs/${kpkg}"_*.deb)
bdeb=$(ls "$work/debs/busybox-static"_*.deb)

rm -rf "$work/kernel" "$work/busybox" "$work/initramfs" "$work/disk"
mkdir -p "$work/kernel" "$work/busybox" "$work/initramfs" "$work/disk"
dpkg-deb -x "$kdeb" "$work/kernel"
dpkg-deb -x "$bdeb" "$work/busybox"
bb=$work/busybox/bin/busybox
[ -x "$bb" ] || die "busybox-static has no bin/busybox"
vmlinuz=$work/kernel/boot/vmlinuz-$krel
[ -f "$vmlinuz" ] || die "$kdeb has no boot/vmlinuz-$krel"
moddir=$work/kernel/lib/modules/$krel

# modules.dep is made by depmod at install time, so make it here with busybox's.
"$bb" depmod -b "$work/kernel" "$krel"

# Resolve the wanted modules and their dependencies into a load order.
declare -A deps=() seen=() byname=()
while IFS= read -r line; do
	k=${line%%:*}
	deps[$k]=${line#*:}
	b=${k##*/}
	b=${b%%.ko*}
	byname[${b//-/_}]=$k
done <"$moddir/modules.dep"
order=()
visit() {
	local m=$1 d
	[ -n "${seen[$m]:-}" ] && return
	seen[$m]=1
	for d in ${deps[$m]}; do visit "$d"; done
	order+=("$m")
}
while read -r name _; do
	case $name in '' | '#'*) continue ;; esac
	path=${byname[${name//-/_}]:-}
	if [ -z "$path" ]; then
		grep -qE "/$name\.ko" "$moddir/modules.builtin" && continue # built into the kernel
		die "module $name not found in $krel"
	fi
	visit "$path"
done <"$guest/modules"

ir=$work/initramfs
mkdir -p "$ir"/{bin,dev,etc,lib/modules,mnt,proc,run,sys,tmp,root,www/cgi-bin} "$ir/usr"
ln -s bin "$ir/sbin"
ln -s ../bin "$ir/usr/bin"
ln -s ../bin "$ir/usr/sbin"
cp "$bb" "$ir/bin/busybox"
for a in $("$bb" --list); do
	[ "$a" = busybox ] || ln -s busybox "$ir/bin/$a"
done
: >"$ir/etc/modules"
for m in "${order[@]}"; do
	f=${m##*/}
	case $f in
	*.ko) cp "$moddir/$m" "$ir/lib/modules/$f" ;;
	*.ko.xz) xz -dc "$moddir/$m" >"$ir/lib/modules/${f%.xz}"; f=${f%.xz} ;;
	*.ko.zst) zstd -qdc "$moddir/$m" >"$ir/lib/modules/${f%.zst}"; f=${f%.zst} ;;
	*.ko.gz) gzip -dc "$moddir/$m" >"$ir/lib/modules/${f%.gz}"; f=${f%.gz} ;;
	*) die "unknown module format $m" ;;
	esac
	echo "$f" >>"$ir/etc/modules"
done
install -m 0755 "$guest/init" "$ir/init"
install -m 0755 "$guest/index.cgi" "$ir/www/cgi-bin/index.cgi"
install -m 0755 "$guest/udhcpc.script" "$ir/etc/udhcpc.script"
echo "root:x:0:0:root:/root:/bin/sh" >"$ir/etc/passwd"
echo "root:x:0:" >"$ir/etc/group"
say "initramfs modules: $(tr '\n' ' ' <"$ir/etc/modules")"

(cd "$ir" && find . -print0 | LC_ALL=C sort -z | cpio --null --create --format=newc --reproducible --owner=0:0 --quiet) |
	gzip -9n >"$work/disk/initrd.gz"
cp "$vmlinuz" "$work/disk/vmlinuz"
# no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer
# check can miss its ticks and panic ("IO-APIC + timer doesn't work!");
# a virtual machine's timer needs no such check.
cat >"$work/disk/syslinux.cfg" <<'EOF'
SERIAL 0 115200
DEFAULT kiln
PROMPT 0
TIMEOUT 0
LABEL kiln
  KERNEL /vmlinuz
  INITRD /initrd.gz
  APPEND console=ttyS0,115200 panic=-1 quiet no_timer_check
EOF

# A FAT superfloppy (no partition table) that SeaBIOS boots through syslinux.
kib=$(du -sk "$work/disk" | cut -f1)
mib=$(((kib / 1024) + 8))
raw=$work/boot.img
rm -f "$raw"
truncate -s "${mib}M" "$raw"
mkfs.vfat -n KILNBOOT "$raw" >/dev/null
syslinux --install "$raw"
for f in vmlinuz initrd.gz syslinux.cfg; do
	mcopy -o -i "$raw" "$work/disk/$f" "::/$f"
done

tmp=$out.tmp
qemu-img convert -q -f raw -O qcow2 "$raw" "$tmp"
mv -f "$tmp" "$out"
echo "$stamp" >"$out.stamp"
rm -f "$raw"
say "built $out ($(du -h "$out" | cut -f1), disk ${mib} MiB)"

#!/usr/bin/env bash
# Install what building and testing kiln needs, on Debian 12. Idempotent: it
# runs apt-get only when a package is missing, and never asks a question.
# Used by .ci/run and `make demo`.
set -euo pipefail

# Build: cgo for libvirt.org/go/libvirt.
pkgs=(ca-certificates make gcc pkg-config libvirt-dev)
# Executor tests and the test guest (issue 4): libvirtd with QEMU, bridges,
# dnsmasq, iptables, and what builds the guest image.
# Listed one by one because apt runs with --no-install-recommends: the QEMU
# driver of libvirtd, the BIOS and the NIC option ROMs are only recommended.
pkgs+=(libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86
	qemu-system-data seabios ipxe-qemu qemu-utils dnsmasq-base iptables iproute2 procps
	busybox-static syslinux syslinux-common mtools dosfstools cpio xorriso genisoimage)

missing=()
for p in "${pkgs[@]}"; do
	if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
		missing+=("$p")
	fi
done

if ((${#missing[@]})); then
	echo "install-deps: installing ${missing[*]}"
	sudo=()
	[[ $(id -u) != 0 ]] && sudo=(sudo)
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq </dev/null
	"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi

if ! command -v go >/dev/null && [[ ! -x /usr/local/go/bin/go ]]; then
	echo "install-deps: Go is not installed; install Go 1.26 into /usr/local/go (https://go.dev/dl/)" >&2
	exit 1
fi

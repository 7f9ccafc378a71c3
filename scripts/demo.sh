#!/usr/bin/env bash
# demo.sh — kiln's quickstart on a real guest, without touching the host's
# network or its libvirt.
#
# It makes a network namespace kiln-demo-<pid>, and inside it (with a mount
# namespace of its own) a private libvirtd and virtlogd whose state lives on
# tmpfs. There it runs the embedded default of bin/kiln:
#
#   kiln apply examples/quickstart -auto-approve -var image_path=.../kiln-test-guest.qcow2
#   kiln output quickstart
#   (the guest answers HTTP on its address)
#   kiln destroy quickstart -auto-approve
#
# and then removes the namespace, the daemons, the guest and everything kiln
# made (also when a step fails or on Ctrl-C). Needs root, bin/kiln (make
# build) and the test guest (make test-image): `make demo` does all of it.
#
# Environment:
#   KILN_DEMO_KEEP=1   keep the work directory (./.kiln, logs) for a look
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
kiln=$root/bin/kiln
image=$root/build/images/kiln-test-guest.qcow2
ns=kiln-demo-$$

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (network namespaces, bridges, iptables, libvirtd)"
[[ -x $kiln ]] || die "$kiln is missing: run make build"
[[ -f $image ]] || die "$image is missing: run make test-image"
for bin in ip unshare libvirtd virtlogd qemu-system-x86_64 qemu-img iptables dnsmasq; do
	command -v "$bin" >/dev/null || die "$bin is missing: run scripts/install-deps.sh"
done

work=$(mktemp -d /tmp/kiln-demo.XXXXXX)

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if ip netns list | grep -qw "$ns"; then
		# Everything the demo started lives in the namespace: libvirtd,
		# virtlogd, qemu, dnsmasq. Kill them (bounded), then drop it; its
		# bridges and iptables rules go with it, its tmpfs mounts with the
		# last process of its mount namespace.
		for sig in TERM KILL; do
			pids=$(ip netns pids "$ns" 2>/dev/null || true)
			[[ -z $pids ]] && break
			kill -"$sig" $pids 2>/dev/null || true
			for _ in $(seq 50); do
				[[ -z $(ip netns pids "$ns" 2>/dev/null || true) ]] && break
				sleep 0.1
			done
		done
		ip netns del "$ns" || echo "demo: could not delete namespace $ns" >&2
	fi
	if [[ ${KILN_DEMO_KEEP:-} == 1 ]]; then
		echo "demo: work directory kept in $work"
	else
		rm -rf "$work"
	fi
	if ((rc == 0)); then
		say "done: namespace $ns, its libvirtd and everything kiln made are gone"
	else
		echo "demo: failed (exit $rc); logs were in $work (KILN_DEMO_KEEP=1 keeps them)" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "network namespace $ns with a private libvirtd"
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up

# The inner script runs in the namespace, in a mount namespace of its own.
# shellcheck disable=SC2016
# The storage pools (image cache, disks) go to the work directory too, so
# the demo leaves nothing on the host (a real install keeps them in
# /var/lib/kiln/storage).
ip netns exec "$ns" unshare -m env KILN="$kiln" ROOT="$root" IMAGE="$image" WORK="$work" KILN_STORAGE_DIR="$work/storage" bash -euo pipefail -c '
say() { printf "\n\033[1m== %s\033[0m\n" "$*"; }

# Mounts below must never reach the host: make the tree a slave first.
mount --make-rslave /
for d in /etc/libvirt /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do
	mkdir -p "$d"
	mount -t tmpfs -o mode=0755 kiln-demo "$d"
	mount --make-private "$d"
done
mkdir -p /etc/libvirt/qemu /var/lib/libvirt/qemu /var/log/libvirt/qemu /var/cache/libvirt/qemu
# The same configuration as the private libvirtd of the tests.
cp "$ROOT"/internal/libvirttest/etc/*.conf /etc/libvirt/

virtlogd -d -p /run/libvirt/virtlogd.pid -f /etc/libvirt/virtlogd.conf
libvirtd -d -p /run/libvirt/libvirtd.pid -f /etc/libvirt/libvirtd.conf
for i in $(seq 300); do
	virsh -c qemu:///system version >/dev/null 2>&1 && break
	[[ $i == 300 ]] && { echo "libvirtd did not answer within 30 s:"; tail -20 /var/log/libvirt/libvirtd.log; exit 1; }
	sleep 0.1
done
echo "libvirtd answers on qemu:///system (state on tmpfs, seen only in this namespace)"

cd "$WORK"
export KILN_LIBVIRT_URI=qemu:///system
unset KILN_ADDR

say "kiln apply examples/quickstart (embedded default in $WORK/.kiln)"
"$KILN" apply "$ROOT/examples/quickstart" -auto-approve -var image_path="$IMAGE"

say "kiln output quickstart"
"$KILN" output quickstart
addr=$("$KILN" output quickstart address)

say "the guest answers on http://$addr/"
# kiln apply returned once the guest had taken its DHCP lease (the
# readiness rule of a server without a ready block); its web server starts
# a moment later.
if command -v curl >/dev/null; then get() { curl -fsS -m 3 "$1"; }
elif command -v wget >/dev/null; then get() { wget -q -T 3 -O - "$1"; }
else get() { timeout 3 busybox wget -q -O - "$1"; }
fi
body=""
for i in $(seq 10); do
	if body=$(get "http://$addr/" 2>/dev/null) && [[ -n $body ]]; then break; fi
	body=""
	sleep 1
done
if [[ -z $body ]]; then
	echo "the guest did not answer within 10 s of being ready; its console:"
	tail -30 "$WORK"/.kiln/agent/console/* 2>/dev/null || true
	exit 1
fi
echo "$body"

say "kiln status quickstart"
"$KILN" status quickstart

say "kiln destroy quickstart"
"$KILN" destroy quickstart -auto-approve
left=$(virsh -c qemu:///system list --all --name | grep -c . || true)
echo "domains left in the private libvirtd: $left"
[[ $left == 0 ]]
'

#!/usr/bin/env bash
# Enforce kiln's layering, the rules listed under "Packages" in
# docs/architecture.md:
#   - spec and planner are pure: they import no os, net, os/exec, io/ioutil or
#     syscall, and depend on no raft, libvirt, netlink or iptables package;
#   - executors never depend on raftstore;
#   - nothing imports kiln's daemon packages except main and daemon itself.
# Test files are not checked: a test may use whatever it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

mod=$(go list -m)
fail=0
complain() { echo "check-deps: $*" >&2; fail=1; }

# 1. Direct imports of the pure packages.
for pkg in ./spec/... ./planner/...; do
	while read -r p imports; do
		for forbidden in os net os/exec io/ioutil syscall; do
			for i in $imports; do
				[[ $i == "$forbidden" ]] && complain "$p imports $forbidden (spec and planner do no I/O)"
			done
		done
	done < <(go list -f '{{.ImportPath}} {{join .Imports " "}}' "$pkg")
done

# 2. Transitive dependencies of the pure packages.
deps=$(go list -deps ./spec/... ./planner/...)
for pat in github.com/hashicorp/raft libvirt.org/ github.com/vishvananda/netlink github.com/coreos/go-iptables; do
	if grep -q "^$pat" <<<"$deps"; then
		complain "spec or planner depends on $(grep "^$pat" <<<"$deps" | head -1)"
	fi
done

# 3. executors never reach raftstore.
if [[ -d executors ]]; then
	if go list -deps ./executors/... | grep -q "^$mod/raftstore"; then
		complain "executors depend on $mod/raftstore"
	fi
fi

# 4. Only main and daemon import daemon.
while read -r p imports; do
	[[ $p == "$mod" || $p == "$mod/daemon" || $p == "$mod/daemon/"* ]] && continue
	for i in $imports; do
		[[ $i == "$mod/daemon" || $i == "$mod/daemon/"* ]] && complain "$p imports $i (only main and daemon may)"
	done
done < <(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./...)

if [[ $fail == 0 ]]; then
	echo "check-deps: ok"
fi
exit "$fail"

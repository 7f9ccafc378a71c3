#!/usr/bin/env bash
# Enforce kiln's layering, the rules listed under "Packages" in
# docs/architecture.md:
#   - spec and planner are pure: they import no os, net, os/exec, io/ioutil or
#     syscall, and depend on no raft, libvirt, netlink or iptables package;
#   - executors never depend on raftstore;
#   - the wire contract (api) and the Go client (client) import no daemon,
#     raftstore or executors package: both sides of the contract import them;
#   - nothing imports kiln's daemon packages except the CLI (cli) and daemon
#     itself, and nothing but main imports the CLI;
#   - the agent imports neither the leader's engine nor the server: it talks
#     to the servers only over HTTP, in api's types.
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

# 4. The contract and the client stand below the daemon.
while read -r p imports; do
	for i in $imports; do
		case $i in
		"$mod/daemon"* | "$mod/raftstore"* | "$mod/executors"* | "$mod/cli" | "$mod/cli/"*)
			complain "$p imports $i (api and client import only spec, planner and api)" ;;
		esac
	done
done < <(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./api/... ./client/...)

# 5. Only cli and daemon import daemon; only main imports cli.
while read -r p imports; do
	for i in $imports; do
		if [[ $i == "$mod/daemon/"* && $p != "$mod/cli" && $p != "$mod/daemon/"* ]]; then
			complain "$p imports $i (only cli and daemon may)"
		fi
		if [[ ($i == "$mod/cli" || $i == "$mod/cli/"*) && $p != "$mod" ]]; then
			complain "$p imports $i (only main may)"
		fi
	done
done < <(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./...)

# 6. The agent reaches the servers only over HTTP.
if go list -deps ./daemon/agent/... | grep -qE "^$mod/daemon/(engine|server)\$"; then
	complain "daemon/agent depends on the leader's engine or the server"
fi

if [[ $fail == 0 ]]; then
	echo "check-deps: ok"
fi
exit "$fail"

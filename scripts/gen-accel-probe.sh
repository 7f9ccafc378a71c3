#!/usr/bin/env bash
# Regenerate executors/accel/probe.bin, the accelerator probe's boot sector,
# from probe.S with binutils (as, ld). kiln's build embeds the committed
# probe.bin and needs neither; run this only after changing probe.S, and
# commit both. The output is reproducible: the same probe.S gives the same
# bytes (no timestamps, no build ids in a flat binary).
set -euo pipefail
cd "$(dirname "$0")/../executors/accel"

for tool in as ld; do
	command -v "$tool" >/dev/null || { echo "gen-accel-probe: $tool is missing (apt-get install binutils)" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
as --32 -o "$tmp/probe.o" probe.S
ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o "$tmp/probe.bin" "$tmp/probe.o"

size=$(stat -c %s "$tmp/probe.bin")
if [[ $size != 512 ]]; then
	echo "gen-accel-probe: probe.bin is $size bytes, want one 512-byte sector" >&2
	exit 1
fi
if [[ $(od -An -tx1 -j510 -N2 "$tmp/probe.bin" | tr -d ' ') != 55aa ]]; then
	echo "gen-accel-probe: probe.bin lacks the 0x55 0xaa boot signature" >&2
	exit 1
fi
install -m 0644 "$tmp/probe.bin" probe.bin
echo "gen-accel-probe: wrote executors/accel/probe.bin ($(sha256sum probe.bin | cut -c1-16)...)"

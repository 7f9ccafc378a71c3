# kiln — build, test and demo. `make help` lists the targets.

export PATH := /usr/local/go/bin:$(PATH)

GO      ?= go
BIN     := bin/kiln
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X github.com/kiln-dev/kiln/cli.Version=$(VERSION)

.PHONY: all help build test e2e lint bench bench-writes bench-orchestration bench-real bench-real-executors fuzz demo test-image deps clean

all: build

help:
	@echo "make build       build $(BIN)"
	@echo "make test        run every test (real libvirtd/bridges/iptables in private namespaces; needs root and make test-image)"
	@echo "make e2e         run only the end-to-end test through the CLI"
	@echo "make lint        gofmt, go vet and the layering check"
	@echo "make bench       run the benchmarks and print a short report (BENCH=pattern to choose, BENCHSKIP=pattern to leave out; long: see the Makefile)"
	@echo "make bench-writes the write-path figures: the three-process trio over HTTP and the store alone, fixed counts"
	@echo "make bench-orchestration apply/destroy of 1,000 no-op actions (single node, trio, Terraform, kiln/Terraform ratio) and 10,000, once each"
	@echo "make fuzz        run every fuzz target for FUZZTIME each (default 15s)"
	@echo "make bench-real  apply/destroy of 1, 5, 10, 50 real guests until ready vs the by-hand floor (slow)"
	@echo "make bench-real-executors 200 volumes and 20 networks through the real drivers vs a by-hand virsh/ip loop, and the split by kind"
	@echo "make demo        install what is missing, build, then apply examples/quickstart on a real guest in a private namespace and destroy it"
	@echo "make test-image  build build/images/kiln-test-guest.qcow2"

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) .

# Every test, the real-component ones and the end-to-end one included: they
# make their own network namespaces and private libvirtd, and need root and
# the test guest (make test-image).
TESTFLAGS ?= -p 2 -timeout 30m

# test installs what is missing and builds the test guest first (both do
# nothing when already done), so `make test` alone works on a fresh machine.
test: deps test-image
	$(GO) test $(TESTFLAGS) -count=1 ./...

e2e: deps test-image
	$(GO) test $(TESTFLAGS) -count=1 -v ./e2e/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './build/*')); \
	if [ -n "$$out" ]; then echo "gofmt: these files need formatting:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	scripts/check-deps.sh

# The default skips the real-guest benchmarks of e2e (minutes each); make
# bench-real and make bench-real-executors run them. BENCHSKIP leaves
# benchmarks out (go test -skip), e.g. BENCHSKIP='Terraform' the ones that
# run Terraform (about 25 s each, skipped where it is not installed); the
# orchestration benchmarks take about 75 s together (make
# bench-orchestration). BENCHTIMEOUT is go test's limit per package binary.
BENCH ?= .
BENCHSKIP ?=
BENCHPKGS ?= $$($(GO) list ./... | grep -v /e2e$$)
BENCHTIMEOUT ?= 60m

bench:
	@mkdir -p build
	$(GO) test -run '^$$' -bench '$(BENCH)' -skip '$(BENCHSKIP)' -benchmem -timeout $(BENCHTIMEOUT) $(BENCHPKGS) | tee build/bench.txt
	@echo
	@echo "== benchmark report =="
	@awk '/^pkg:/ {pkg=$$2; sub(".*/kiln/?", "", pkg); if (pkg == "") pkg = "."} \
		/^Benchmark/ {line = sprintf("%-12s %-44s", pkg, $$1); \
		for (i = 3; i < NF; i += 2) line = line sprintf(" %12s %s", $$i, $$(i+1)); print line}' build/bench.txt

# The write path at fixed counts, so that runs before and after a change do
# the same work: HTTP writes to a trio of server processes (serial, 64
# clients, 64 clients through the followers) and the raft store alone. The
# trio's servers get GOMAXPROCS of their share of the cores
# (KILN_BENCH_SERVER_PROCS=0 keeps Go's default). Under a shared machine,
# compare server-cpu-us/write as well as writes/s.
WRITES ?= 3000x
bench-writes:
	$(GO) test -run '^$$' -bench 'Writes' -benchtime $(WRITES) ./daemon/realprocess
	$(GO) test -run '^$$' -bench 'ApplySerial$$|ApplyConcurrent' -benchtime 3s ./raftstore

# Issue 13's orchestration cost, each benchmark once: apply and destroy
# through the CLI of 100 networks + 900 volumes on the in-memory driver on
# a single node and on a trio with an agent process, Terraform's
# terraform_data with the same counts, both in one iteration for the
# kiln/Terraform ratios (apply-vs-terraform, destroy-vs-terraform), and
# 1,000 + 9,000 on a single node; server-peak-MiB is the server's VmHWM.
# The Terraform ones are skipped where terraform is not on PATH.
ORCHBENCH := Orchestration1000$$|Orchestration1000Trio$$|Terraform1000$$|Orchestration1000VsTerraform$$|Orchestration10000$$
bench-orchestration:
	@mkdir -p build
	$(GO) test -run '^$$' -bench '$(ORCHBENCH)' -benchtime 1x -timeout $(BENCHTIMEOUT) ./daemon/realprocess | tee build/bench-orchestration.txt

bench-real: build
	@mkdir -p build
	$(GO) test -run '^$$' -bench ApplyDestroy -benchtime 1x -timeout 60m ./e2e/ | tee build/bench-real.txt

# Issue 13's real-executor figure: 20 networks and 200 volumes applied and
# destroyed by kiln with the real drivers vs a by-hand loop of virsh
# vol-create-as and ip link add in the same test namespace and libvirtd,
# then the same split by kind (REALBENCH=pattern narrows it;
# KILN_BENCH_COUNT_IPTABLES=1 also counts kiln's iptables runs).
REALBENCH ?= RealExecutors
bench-real-executors: build
	@mkdir -p build
	KILN_E2E_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench '$(REALBENCH)' -benchtime 1x -timeout 30m ./e2e/ | tee build/bench-real-executors.txt

# Every fuzz target of the repository, as package:Name, each run for
# FUZZTIME. Append new targets to the list (one per line).
FUZZTIME ?= 15s
FUZZ_TARGETS := \
	./spec:FuzzParse \
	./raftstore:FuzzDecodeCommand \
	./raftstore:FuzzReadSnapshot \
	./daemon/server:FuzzDecodeRequest

# fuzz first checks that every Fuzz function of the repository is listed.
# Minimizing a new input is bounded to 5s (Go's default, 60s, can take
# most of a short run).
fuzz:
	@set -e; for f in $$(git grep -h -o -E '^func Fuzz[A-Za-z0-9_]+' -- '*_test.go' | sed 's/^func //'); do \
		case " $(FUZZ_TARGETS) " in *":$$f "*) ;; *) echo "make fuzz: $$f is not in FUZZ_TARGETS"; exit 1;; esac; \
	done
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== fuzz $$name in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg; \
	done

deps:
	scripts/install-deps.sh

demo: deps build test-image
	scripts/demo.sh

test-image:
	@if [ -x scripts/build-test-image.sh ]; then scripts/build-test-image.sh; \
	else echo "scripts/build-test-image.sh is not there yet"; exit 1; fi

clean:
	rm -rf bin build/bench.txt build/bench-orchestration.txt

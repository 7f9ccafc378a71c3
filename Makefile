# kiln — build, test and demo. `make help` lists the targets.

export PATH := /usr/local/go/bin:$(PATH)

GO      ?= go
BIN     := bin/kiln
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X github.com/kiln-dev/kiln/daemon/cli.Version=$(VERSION)

.PHONY: all help build test lint bench demo test-image deps clean

all: build

help:
	@echo "make build       build $(BIN)"
	@echo "make test        run every test"
	@echo "make lint        gofmt, go vet and the layering check"
	@echo "make bench       run the benchmarks and print a short report"
	@echo "make demo        install what is missing, build, validate and plan examples/quickstart"
	@echo "make test-image  build build/images/kiln-test-guest.qcow2"

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) .

test:
	$(GO) test ./... -count=1

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './build/*')); \
	if [ -n "$$out" ]; then echo "gofmt: these files need formatting:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	scripts/check-deps.sh

bench:
	@mkdir -p build
	$(GO) test -run '^$$' -bench . -benchmem ./... | tee build/bench.txt
	@echo
	@echo "== benchmark report =="
	@awk '/^pkg:/ {pkg=$$2; sub(".*/kiln/?", "", pkg); if (pkg == "") pkg = "."} \
		/^Benchmark/ {line = sprintf("%-12s %-44s", pkg, $$1); \
		for (i = 3; i < NF; i += 2) line = line sprintf(" %12s %s", $$i, $$(i+1)); print line}' build/bench.txt

deps:
	scripts/install-deps.sh

demo: deps build
	$(BIN) validate examples/quickstart
	$(BIN) plan examples/quickstart

test-image:
	@if [ -x scripts/build-test-image.sh ]; then scripts/build-test-image.sh; \
	else echo "scripts/build-test-image.sh is not there yet"; exit 1; fi

clean:
	rm -rf bin build/bench.txt

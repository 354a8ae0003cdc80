# xswitch — see README.md. Every target works on a fresh machine of this kind
# (root, Linux with AF_XDP); `make deps` installs what tests and demo need.
GO       ?= go
PKGS     := ./...
FUZZTIME ?= 10s
BIN      := bin/xswitch

.PHONY: all build test race vet fmtcheck fuzz bench bench-tcp demo deps clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/xswitch

deps:
	./.ci/deps

vet:
	$(GO) vet $(PKGS)

fmtcheck:
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$bad" ]; then echo "gofmt needed on: $$bad"; exit 1; fi

# Root tests (namespaces, AF_XDP, OVS, tshark) run here too; they skip with a
# message only when not root. -p 1: the namespace tests share two cores.
# Then the race pass (target race) runs the unit tests of every package again.
test: deps vet fmtcheck build
	$(GO) test -count=1 -p 1 -timeout 40m $(PKGS)
	$(MAKE) --no-print-directory race

# Unit tests of every package under the race detector. -short makes the
# namespace/AF_XDP tests skip (testnet.RequireRoot says so; the pass above
# runs them), so this takes a few minutes, mostly building with -race.
race:
	$(GO) test -race -short -count=1 -timeout 20m $(PKGS)

# A short run of every fuzz target (go test -fuzz takes one target at a time).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

bench:
	./bench/run.sh

# The TCP part of make bench alone (iperf3; QUICK=1 for one short run per case).
bench-tcp:
	BENCH_TCP=only ./bench/run.sh

demo: deps build
	./cmd/xswitch/demo.sh

clean:
	rm -rf bin

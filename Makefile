# xswitch — see README.md. Every target works on a fresh machine of this kind
# (root, Linux with AF_XDP); `make deps` installs what tests and demo need.
GO       ?= go
PKGS     := ./...
FUZZTIME ?= 10s
BIN      := bin/xswitch

# Install locations (make install PREFIX=/usr DESTDIR=/tmp/stage).
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
DESTDIR    ?=

# Build stamps (xswitch version, ctl show, xswitch_build_info). go build
# records the VCS revision itself (-buildvcs) in a plain git checkout, not
# in a git worktree or an unpacked tarball: pass what git says explicitly.
# VERSION= overrides the version (default: the module version Go derives
# from a git tag, else "dev").
VERSION  ?=
IN_GIT   := $(shell git rev-parse --git-dir >/dev/null 2>&1 && echo yes)
REVISION ?= $(if $(IN_GIT),$(shell git rev-parse HEAD))
REVTIME  ?= $(if $(IN_GIT),$(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ))
MODIFIED ?= $(if $(IN_GIT),$(shell test -z "$$(git status --porcelain)" && echo false || echo true))
LDFLAGS  := $(if $(VERSION),-X main.version=$(VERSION)) $(if $(REVISION),-X main.revision=$(REVISION)) \
            $(if $(REVTIME),-X main.revisionTime=$(REVTIME)) $(if $(MODIFIED),-X main.revisionModified=$(MODIFIED))

.PHONY: fabric-demo all build install test race vet fmtcheck fuzz bench bench-tcp demo deps clean

all: build

build:
	$(GO) build -buildvcs=auto -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/xswitch

# The binary, the systemd unit (paths rewritten to BINDIR and SYSCONFDIR)
# and, when there is none yet, an example configuration to edit.
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/xswitch
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/local/bin/xswitch|$(BINDIR)/xswitch|g' -e 's|/etc/xswitch/|$(SYSCONFDIR)/xswitch/|g' \
	    packaging/xswitch.service > $(DESTDIR)$(UNITDIR)/xswitch.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/xswitch.service
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/xswitch/xswitch.yaml ]; then \
	  echo "kept $(DESTDIR)$(SYSCONFDIR)/xswitch/xswitch.yaml"; \
	else \
	  install -D -m 0644 packaging/xswitch.yaml $(DESTDIR)$(SYSCONFDIR)/xswitch/xswitch.yaml; \
	  echo "installed the example $(DESTDIR)$(SYSCONFDIR)/xswitch/xswitch.yaml: edit it"; \
	fi
	@echo "next: xswitch check --config $(SYSCONFDIR)/xswitch/xswitch.yaml; systemctl daemon-reload; systemctl enable --now xswitch"

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

# The BGP EVPN fabric measured (docs/fabric.md): FABRIC_HOSTS xswitch hosts
# with a VM namespace each and two FRR route reflectors, against the same
# hosts with a static full mesh of tunnels. Root; prints the FIGURE lines.
FABRIC_HOSTS ?= 16
fabric-demo: deps build
	XSWITCH_FABRIC_DEMO=1 XSWITCH_FABRIC_HOSTS=$(FABRIC_HOSTS) $(GO) test -count=1 -v -timeout 20m \
	  -run '^TestFabricDemo$$' ./cmd/xswitch | grep -E 'FIGURE|^(---|ok|FAIL|PASS)|Error|error'

clean:
	rm -rf bin

# pgplane: `make run` starts one dev appliance on loopback; `make test` runs every test.
# Both install what they lack (Debian packages through apt-get, Go modules through the proxy).

GO        ?= go
BIN       := bin
PGPLANE   := $(BIN)/pgplane
PGPLANECTL:= $(BIN)/pgplanectl
FUZZTIME  ?= 30s
# Debian packages the tests and benchmarks use: command -> package.
DEB_CMDS  := dig:dnsutils nslookup:dnsutils dnsperf:dnsperf ip:iproute2 \
             psql:postgresql-client pgbench:postgresql-client \
             /usr/lib/postgresql/15/bin/postgres:postgresql
GO_SRC    := $(shell find . -name '*.go' -not -path './bin/*') go.mod go.sum

.PHONY: all build run test test-unit test-e2e bench bench-dns lint fuzz deps clean

all: build

build: $(PGPLANE) $(PGPLANECTL)

$(PGPLANE): $(GO_SRC)
	$(GO) build -o $@ ./cmd/pgplane

$(PGPLANECTL): $(GO_SRC)
	$(GO) build -o $@ ./cmd/pgplanectl

# deps apt-installs the Debian packages that are missing, and nothing else.
deps:
	@missing=""; for pair in $(DEB_CMDS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x $$cmd ] || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  pkgs=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	  echo "deps: installing $$pkgs"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$pkgs >/dev/null; \
	fi

run: deps build
	cd corefile/dev && ../../$(PGPLANE) -conf Corefile

test: deps build
	$(GO) vet ./...
	PGPLANE_BIN=$(CURDIR)/$(PGPLANE) $(GO) test -count=1 ./...

test-unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test/e2e)

test-e2e: deps build
	PGPLANE_BIN=$(CURDIR)/$(PGPLANE) $(GO) test -count=1 -v ./test/e2e

bench: bench-dns

bench-dns: deps build
	$(GO) run ./benchmarks/dns -bin $(CURDIR)/$(PGPLANE) -out benchmarks/dns/out

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

fuzz:
	$(GO) test ./plugin/pgplane -run '^$$' -fuzz FuzzServeDNS -fuzztime $(FUZZTIME)
	$(GO) test ./topology -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)

clean:
	rm -rf $(BIN) benchmarks/*/out

# pgplane: `make run` starts one dev appliance on loopback; `make test` runs every test.
# Both install what they lack (Debian packages through apt-get, Go modules through the proxy).

GO        ?= go
BIN       := bin
PGPLANE   := $(BIN)/pgplane
PGPLANECTL:= $(BIN)/pgplanectl
FUZZTIME  ?= 30s
# FUZZMINIMIZETIME bounds the shrinking of each new input: with go test's 60 s, the targets whose
# seeds are whole topology files stalled (a worker shrank inputs for minutes while nothing ran).
FUZZMINIMIZETIME ?= 2s
# Debian packages the tests and benchmarks use: command (or file) -> package.
# The drivers' e2e test also installs node-postgres from the npm registry.
DEB_CMDS  := dig:dnsutils nslookup:dnsutils dnsperf:dnsperf ip:iproute2 setpriv:util-linux \
             psql:postgresql-client pgbench:postgresql-client systemd-analyze:systemd curl:curl \
             javac:default-jdk-headless /usr/share/java/postgresql.jar:libpostgresql-jdbc-java \
             /usr/lib/python3/dist-packages/asyncpg:python3-asyncpg /usr/lib/python3/dist-packages/psycopg:python3-psycopg \
             node:nodejs npm:npm patroni:patroni etcd:etcd-server dnsviz:dnsviz kdig:knot-dnsutils \
             $(firstword $(wildcard /usr/lib/postgresql/*/bin/postgres) postgres-server):postgresql
GO_SRC    := $(shell find . -name '*.go' -not -path './bin/*') go.mod go.sum

.PHONY: all build run run-cluster demo test soak test-unit test-e2e bench bench-dns bench-propagation bench-scale bench-floods bench-gateway bench-failover lint fuzz deps clean

all: build

build: $(PGPLANE) $(PGPLANECTL)

$(PGPLANE): $(GO_SRC)
	$(GO) build -o $@ ./cmd/pgplane

$(PGPLANECTL): $(GO_SRC)
	$(GO) build -o $@ ./cmd/pgplanectl

# deps apt-installs the Debian packages that are missing, and nothing else.
deps:
	@missing=""; for pair in $(DEB_CMDS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -e $$cmd ] || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  pkgs=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	  echo "deps: installing $$pkgs"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$pkgs >/dev/null; \
	fi

# run starts the dev PostgreSQL backend (127.0.0.1:55432) and the dev appliance;
# Ctrl-C stops both.
run: deps build
	$(GO) build -o $(BIN)/devdb ./internal/cmd/devdb
	@$(BIN)/devdb -tls corefile/dev/.tls & db=$$!; \
	trap 'kill $$db 2>/dev/null; wait $$db' EXIT INT TERM; \
	cd corefile/dev && ../../$(PGPLANE) -conf Corefile

# demo starts three nodes, two PostgreSQL servers and two client VNets on
# loopback, walks through DNS, the gateway, a firewall fix and a failover, and
# removes everything on exit or Ctrl-C.
demo: deps build
	$(GO) build -o $(BIN)/demo ./internal/cmd/demo
	$(BIN)/demo -bin $(BIN)

# run-cluster starts a dev PostgreSQL primary (127.0.0.1:55432) with a
# streaming standby (:55433) and the three nodes of corefile/cluster; Ctrl-C
# stops them all.
run-cluster: deps build
	$(GO) build -o $(BIN)/devdb ./internal/cmd/devdb
	@$(BIN)/devdb -tls corefile/dev/.tls -standby-port 55433 & a=$$!; \
	cd corefile/cluster && ../../$(PGPLANE) -conf Corefile.n1 & n1=$$!; \
	cd corefile/cluster && ../../$(PGPLANE) -conf Corefile.n2 & n2=$$!; \
	trap 'kill $$a $$n1 $$n2 2>/dev/null; wait' EXIT INT TERM; \
	cd corefile/cluster && ../../$(PGPLANE) -conf Corefile.n3

test: deps build
	$(GO) vet ./...
	PGPLANE_BIN=$(CURDIR)/$(PGPLANE) PGPLANECTL_BIN=$(CURDIR)/$(PGPLANECTL) $(GO) test -count=1 ./...

# The soak (issue 15): three nodes under DNS, SQL and admin API load, in a
# network namespace of their own, while a seeded chaos loop kills, restarts
# and cuts off nodes and crashes the PostgreSQL primary; `make test` runs
# 30 s of it.
DURATION ?= 2m
soak: deps build
	PGPLANE_SOAK=$(DURATION) PGPLANE_BIN=$(CURDIR)/$(PGPLANE) PGPLANECTL_BIN=$(CURDIR)/$(PGPLANECTL) $(GO) test -count=1 -timeout 0 -v -run '^TestSoak$$' ./test/e2e

test-unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test/e2e)

test-e2e: deps build
	PGPLANE_BIN=$(CURDIR)/$(PGPLANE) PGPLANECTL_BIN=$(CURDIR)/$(PGPLANECTL) $(GO) test -count=1 -v ./test/e2e

bench: bench-dns bench-gateway bench-failover bench-propagation bench-scale bench-floods

bench-dns: deps build
	$(GO) run ./benchmarks/dns -bin $(CURDIR)/$(PGPLANE) -out benchmarks/dns/out

bench-gateway: deps build
	@command -v pgbouncer >/dev/null && command -v haproxy >/dev/null && command -v perf >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq pgbouncer haproxy linux-perf >/dev/null; }
	$(GO) run ./benchmarks/gateway -bin $(CURDIR)/$(PGPLANE) -out benchmarks/gateway/out

# Floods beside a legitimate client (issue 15): DNS, gateway and admin API.
bench-floods: deps build
	$(GO) run ./benchmarks/floods -bin $(CURDIR)/$(PGPLANE) -out benchmarks/floods/out

bench-failover: deps build
	$(GO) run ./benchmarks/failover -bin $(CURDIR)/$(PGPLANE) -out benchmarks/failover/out

# SIZES: numbers of servers, comma separated (1,000,000 needs about 10 GB of memory and several minutes).
SIZES ?= 10000,100000,1000000
bench-scale: deps build
	$(GO) run ./benchmarks/scale -bin $(CURDIR)/$(PGPLANE) -sizes $(SIZES) -out benchmarks/scale/out

bench-propagation: deps build
	$(GO) run ./benchmarks/propagation -bin $(CURDIR)/$(PGPLANE) -out benchmarks/propagation/out

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# FUZZ_TARGETS run one after another (package:Target). A target that fails does not stop the ones
# after it; the run fails at the end and names them. FUZZPARALLEL sets each target's workers.
# go test kills a worker whose input runs more than 10 s and reports it as "hung or terminated
# unexpectedly: exit status 2" (golang/go#56238): a worker starved of CPU that long (a low-priority
# run beside benchmarks) reports this too, with an input that passes on its own. A run that ends
# with "context deadline exceeded" and no failing input is go test's own race at the end of
# -fuzztime (golang/go#75804), not a failure.
FUZZ_TARGETS ?= plugin/pgplane:FuzzServeDNS \
               topology:FuzzParse \
               topology:FuzzParserMatchesParse \
               topology:FuzzPlainItemMatchesYAML \
               gateway:FuzzStartupPacket \
               gateway:FuzzProxyHeader \
               gateway:FuzzSession \
               gateway:FuzzSessionAfterTLS \
               gateway:FuzzFrames \
               relay:FuzzRelayPassesBytes \
               pgwire:FuzzScramServer \
               pgwire:FuzzScramClient \
               topology:FuzzOverlay \
               topology:FuzzServerChangesMatchFullRebuild \
               topology:FuzzServerListMatchesSlice \
               topology:FuzzStateChangesMatchFullRebuild \
               topology:FuzzNetworkChangesMatchValidate \
               raftstate:FuzzApplyEntry \
               raftstate:FuzzForwardResponse \
               raftstate:FuzzValueSetMatchesScan \
               cmd/pgplanectl:FuzzCorefileReader \
               appliance:FuzzFileEditsOfServers \
               appliance:FuzzFileEditsOfNetwork
fuzz:
	@failed=; log=$$(mktemp); trap 'rm -f $$log' EXIT; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; echo "== $$name (./$$pkg), $(FUZZTIME)"; \
	  grep -qs "^func $$name(" $$pkg/*_test.go || { echo "no fuzz target $$name in ./$$pkg"; failed="$$failed $$name"; continue; }; \
	  { $(GO) test ./$$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) \
	    $(if $(FUZZPARALLEL),-parallel $(FUZZPARALLEL)) && echo ok > $$log.rc || echo failed > $$log.rc; } 2>&1 | tee $$log; \
	  if [ "$$(cat $$log.rc)" = failed ]; then \
	    if grep -q '^    context deadline exceeded$$' $$log && ! grep -q 'Failing input written' $$log; then \
	      echo "$$name: ran its time; go test's coordinator reported its own deadline (golang/go#75804), no failing input"; \
	    else failed="$$failed $$name"; fi; \
	  fi; rm -f $$log.rc; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz targets that failed:$$failed"; exit 1; fi

clean:
	rm -rf $(BIN) benchmarks/*/out

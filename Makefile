# bbb-agent: build, test, lint, bench, demo.
GO       ?= go
BIN      := bin
COMMANDS := $(notdir $(wildcard cmd/*))
PKGS     := ./...
# The whole suite must stay well under CI's limit.
TEST_TIMEOUT ?= 12m
FUZZTIME ?= 3m

.PHONY: all build test unit lint bench fuzz demo clean package clean-dist

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(COMMANDS))

# Every test, including the fuzz targets' seed corpora and the tests that start
# real servers (PostgreSQL, ...) on loopback.
test: lint
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Every benchmark, one package at a time (go test runs benchmark binaries
# serially). The balancer's performance figures, each measured in one run so
# that the ratios hold on a loaded machine: BenchmarkJoinRatio (join req/s of
# the in-process minimal handler, SQLite and PostgreSQL, and the ratios),
# BenchmarkGetMeetingsKept (kept vs live req/s and p99), BenchmarkCreate,
# BenchmarkReportIngestion (CPU at 10,000 nodes), BenchmarkMemory and
# BenchmarkMemoryProcess (a real bbb-balancer's RSS, split into its parts,
# and CPU beside net/http's floor; 10,000 nodes, 100,000 meetings; the cost
# of a /metrics scrape), BenchmarkReportTransport (HTTP/1.1
# against HTTP/2 for agents). Only those:
# make bench BENCH='JoinRatio|GetMeetingsKept|Create|ReportIngestion|Memory|ReportTransport' PKGS=./balancer
BENCH ?= .
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count=1 -timeout 30m $(PKGS)

# A longer fuzzing run of every fuzz target (the seed corpora run in `make test`).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./bbb
	$(GO) test -run '^$$' -fuzz '^FuzzAPIRequest$$' -fuzztime $(FUZZTIME) ./balancer
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./turn
	$(GO) test -run '^$$' -fuzz '^FuzzAgentAPI$$' -fuzztime $(FUZZTIME) ./balancer
	$(GO) test -run '^$$' -fuzz '^FuzzReport$$' -fuzztime $(FUZZTIME) ./balancer

demo: build
	./scripts/demo.sh

clean:
	rm -rf $(BIN) .demo

# Debian packages of bbb-agent and bbb-balancer (amd64 and arm64) in dist/,
# built with nfpm by packaging/mkdeb; the version comes from git describe.
package:
	$(GO) run ./packaging/mkdeb -out dist -arch amd64,arm64

clean-dist:
	rm -rf dist

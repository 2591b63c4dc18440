# Cocoon mesh. `make help` lists the targets.

GO        ?= go
BIN       := bin
OLLAMA_VERSION := v0.6.5
OLLAMA_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/cocoon/ollama-$(OLLAMA_VERSION)
OLLAMA    := $(OLLAMA_DIR)/ollama
export CGO_CFLAGS ?= -Wno-deprecated-declarations

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/cocoon and bin/chat
	$(GO) build -o $(BIN)/cocoon ./cmd/cocoon
	$(GO) build -o $(BIN)/chat ./examples/chat

.PHONY: run
run: build ## start a local network, send one streaming request, leave the API on 127.0.0.1:10000
	./scripts/run.sh

.PHONY: test
test: ollama lint contracts ## the full suite: lint, race-enabled unit, integration and real-engine tests, a short fuzz of every target
	COCOON_OLLAMA=$(OLLAMA) $(GO) test -race -count=1 -timeout 20m ./...
	$(GO) test -count=1 -run 'TestThousandStreams' ./testnet/   # 1,000 streams: past the race detector's goroutine limit
	$(GO) test -race -count=1 -tags cocoon_testroot -run 'TestTrustTestRoot|TestRelayVerifiesTDXWorker|TestSealedThroughTDXWorker|TestTDXIdentityInMemory|TestMeasurementRemovedDropsPeers' \
		./attest/... ./testnet/   # synthetic TDX quotes under a test root: only in this build
	./scripts/fuzz.sh 5s

.PHONY: contracts
contracts: contracts/node_modules ## check root.boc is compiled from root.tolk; run the contract and sidecar tests
	cd contracts && node build.mjs --check
	cd contracts && npm test

contracts/node_modules: contracts/package-lock.json
	cd contracts && npm ci --no-audit --no-fund
	@touch $@

.PHONY: test-short
test-short: ## unit tests only, no real engine
	$(GO) test -short -count=1 ./...

.PHONY: bench
bench: ## mesh versus direct, sealed versus clear: latency, throughput, inter-chunk gaps, 1,000 streams; attestation, sealing and payment costs; then bench-scale (prints tables)
	$(GO) run ./cmd/bench
	$(GO) test -run '^$$' -bench . -benchtime 1000x ./attest/... ./payments/... ./inference/seal/
	@$(MAKE) --no-print-directory bench-scale

.PHONY: bench-scale
bench-scale: ## discovery on 200 and 1,000 simulated nodes: gossip, bad offers, DHT, a new worker; then a new worker among real nodes (prints tables)
	$(GO) run ./cmd/bench -scale 200,1000
	$(GO) run ./cmd/bench -join 5

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME (default 30s)
	./scripts/fuzz.sh $(or $(FUZZTIME),30s)

.PHONY: lint
lint: ## go vet, gofmt and go mod tidy checks, then the import rules (internal/deptest)
	$(GO) vet ./...
	$(GO) vet -tags cocoon_testroot ./attest/... ./testnet/
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) mod tidy -diff
	$(GO) test -count=1 -run TestImportRules ./internal/deptest/

.PHONY: ollama
ollama: $(OLLAMA) ## build the real engine the tests use (ollama v0.6.5, cached in ~/.cache/cocoon)

$(OLLAMA):
	@echo "building ollama $(OLLAMA_VERSION) into $(OLLAMA_DIR) (about 2 minutes, once)"
	@mkdir -p $(OLLAMA_DIR)
	GOBIN=$(OLLAMA_DIR) CGO_ENABLED=1 $(GO) install github.com/ollama/ollama@$(OLLAMA_VERSION)

.PHONY: clean
clean: ## remove build outputs
	rm -rf $(BIN)

# Sluice's build. `make run` and `make test` work on a fresh machine with only
# Go and gcc: everything else (etcd, kube-apiserver, kube-controller-manager,
# staticcheck) is built from the Go module proxy and cached.

GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
TOOLS_BIN := $(CURDIR)/$(BIN)/tools
STATICCHECK_VERSION := v0.8.2
E2E_TIMEOUT ?= 60m

.PHONY: all build run test unit e2e tools bench lint cluster image clean

all: build

build: ## build bin/sluice
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/sluice ./cmd/sluice

run: build ## run the control plane on the embedded example mesh (no cluster needed)
	$(BIN)/sluice serve --config-dir examples/mesh --xds-address 127.0.0.1:15010

test: unit e2e ## every test: unit, then end-to-end on a real test cluster

unit: ## unit tests: no cluster, under a minute
	$(GO) test -count=1 ./...

tools: ## build (or reuse the cached) etcd, kube-apiserver and kube-controller-manager
	test/cluster/tools/build.sh

e2e: tools ## end-to-end tests on a real kube-apiserver, etcd and kube-controller-manager
	$(GO) test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -v ./test/e2e/... ./test/cluster/...

bench: tools ## Go benchmarks of the hot paths (benchstat-friendly), then the xDS load matrix (about 10 minutes)
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...
	test/load/bench.sh

lint: $(TOOLS_BIN)/staticcheck ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/...
	$(TOOLS_BIN)/staticcheck ./...
	$(TOOLS_BIN)/staticcheck -tags e2e ./test/...

$(TOOLS_BIN)/staticcheck:
	GOBIN=$(TOOLS_BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

cluster: tools ## run a test cluster in the foreground for manual use
	$(GO) run ./test/cluster/cmd/testcluster

image: ## build the container image (needs a Docker engine; none runs on the project's build machines)
	docker build --build-arg VERSION=$(VERSION) -t sluice-mesh/sluice:$(VERSION) .

clean: ## remove build output (the tool cache in ~/.cache/sluice-tools stays)
	rm -rf $(BIN)

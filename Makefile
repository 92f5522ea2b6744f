# Parley's build. `make run` serves the embedded example; `make test` runs every check CI runs.

GO        ?= go
# Tools are built from the Go module proxy into a cache outside the checkout, keyed by version.
CACHE     ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/parley
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(CACHE)/tools/staticcheck-$(STATICCHECK_VERSION)/staticcheck
FUZZTIME  ?= 30s

.PHONY: all run build test lint vet fmt-check unit fuzz bench clean

all: build

## run: serve the embedded example (a Redis decoy on :6379) and print activities
run:
	$(GO) run ./cmd/parley run

## build: the parley binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/parley ./cmd/parley

## test: lint, then every test (with the race detector), fuzz seeds included
test: lint unit

unit:
	$(GO) test -race -count=1 ./...

lint: fmt-check vet $(STATICCHECK)
	$(STATICCHECK) ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

$(STATICCHECK):
	GOBIN=$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## fuzz: run each fuzz target for FUZZTIME (seeds in testdata/fuzz run with every `make test`)
fuzz:
	$(GO) test ./connector/rules/ -run '^$$' -fuzz FuzzCompile -fuzztime $(FUZZTIME)
	$(GO) test ./connector/ -run '^$$' -fuzz FuzzInput -fuzztime $(FUZZTIME)
	$(GO) test ./connector/ops/ -run '^$$' -fuzz FuzzRun -fuzztime $(FUZZTIME)
	$(GO) test ./connector/activity/ -run '^$$' -fuzz FuzzAppendJSON -fuzztime $(FUZZTIME)

## bench: the load comparison against a bare Go server (see docs/performance.md)
bench:
	hack/bench.sh

clean:
	rm -rf bin

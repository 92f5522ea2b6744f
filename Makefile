# Parley's build. `make help` lists the targets; `make run` serves the embedded example; `make test`
# runs every check CI runs; `make quick` is the quick test loop.

GO        ?= go
# Tools are built from the Go module proxy into a cache outside the checkout, keyed by version.
CACHE     ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/parley
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(CACHE)/tools/staticcheck-$(STATICCHECK_VERSION)/staticcheck
FUZZTIME  ?= 30s
# The image the chart, the local cluster and the e2e test use.
IMAGE     ?= ghcr.io/parley-dev/parley:dev

CONTROLLER_GEN = $(shell hack/envtest-assets.sh controller-gen)
# protoc comes from Debian's protobuf-compiler; its Go plugins are pinned like the other tools.
PROTOC_PLUGINS = $(shell dirname $$(hack/envtest-assets.sh protoc-gen-go)):$(shell dirname $$(hack/envtest-assets.sh protoc-gen-go-grpc))

.PHONY: all help run build test quick lint vet fmt-check unit fuzz bench clean generate manifests verify-generated \
	envtest cluster-assets cluster-up cluster-down cluster-status image image-import docker-build e2e demo

## all: the default target: build
all: build

## help: list the targets with what they do
help:
	@echo 'usage: make [TARGET] [VARIABLE=value ...]   (GO, IMAGE, FUZZTIME, CACHE)'
	@awk '/^## [a-z][a-z0-9-]*: / { sub(/^## /, ""); i = index($$0, ": "); \
		printf "  %-18s %s\n", substr($$0, 1, i - 1), substr($$0, i + 2); next } \
		/^## / { sub(/^## /, ""); printf "  %-18s %s\n", "", $$0 }' $(firstword $(MAKEFILE_LIST))

## run: build bin/parley, then serve the embedded example (a Redis decoy on :6379) and print
## activities; Ctrl-C ends it gracefully
run: build
	@bin/parley run

## build: the parley binary in bin/ (static, stripped, as in the image)
build:
	@echo "building bin/parley (the first build fetches and compiles the dependencies: a few minutes)"
	@CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o bin/parley ./cmd/parley

## test: generated files up to date, lint, then every test (race detector, fuzz seeds,
## envtest suites against a real kube-apiserver and etcd built by hack/envtest-assets.sh)
test: verify-generated lint unit

## quick: the quick loop, go test -short ./... (no envtest suites, helm, root or race
## detector; under a minute); make test runs everything
quick:
	$(GO) test -short ./...

## unit: every test with the race detector, envtest suites and chart tests included
unit:
	HELM="$$(hack/envtest-assets.sh helm)" KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" $(GO) test -race -count=1 ./...

## envtest: build (once, cached by version) the kube-apiserver, etcd and kubectl the tests use
envtest:
	hack/envtest-assets.sh

## generate: deepcopy functions of the API types and the engine channel's gRPC code
generate:
	$(CONTROLLER_GEN) object paths=./api/...
	PATH="$(PROTOC_PLUGINS):$$PATH" protoc --go_out=. --go_opt=module=github.com/parley-dev/parley \
		--go-grpc_out=. --go-grpc_opt=module=github.com/parley-dev/parley api/engine/v1/engine.proto

## manifests: CRDs, the operator's RBAC and its webhooks from the API, controller and admission markers
manifests:
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=parley-operator paths="./controllers/...;./engine/...;./admission/...;./internal/operator/..." output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) webhook paths=./admission/... output:webhook:artifacts:config=config/webhook
	hack/sync-chart.sh

## verify-generated: fail when generated files differ from what make generate manifests writes
verify-generated: generate manifests
	@git diff --exit-code -- api config charts/parley/crds charts/parley/files || { echo "generated files are stale: run make generate manifests and commit"; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard -- api config charts/parley/crds charts/parley/files); \
	if [ -n "$$untracked" ]; then echo "generated files not committed: $$untracked"; exit 1; fi

## lint: fmt-check, vet and staticcheck (built once, cached by version)
lint: fmt-check vet $(STATICCHECK)
	$(STATICCHECK) ./...

## vet: go vet ./...
vet:
	$(GO) vet ./...

## fmt-check: fail when a Go file needs gofmt
fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

$(STATICCHECK):
	GOBIN=$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## fuzz: run each fuzz target for FUZZTIME (seeds in testdata/fuzz run with every `make test`)
fuzz:
	$(GO) test ./rules/ -run '^$$' -fuzz FuzzCompile -fuzztime $(FUZZTIME)
	$(GO) test ./rules/ -run '^$$' -fuzz FuzzRegexp -fuzztime $(FUZZTIME)
	$(GO) test ./rules/ -run '^$$' -fuzz FuzzPrefilter -fuzztime $(FUZZTIME)
	$(GO) test ./connector/ -run '^$$' -fuzz FuzzInput -fuzztime $(FUZZTIME)
	$(GO) test ./connector/framing/ -run '^$$' -fuzz FuzzFramer -fuzztime $(FUZZTIME)
	$(GO) test ./rules/ops/ -run '^$$' -fuzz FuzzRun -fuzztime $(FUZZTIME)
	$(GO) test ./connector/activity/ -run '^$$' -fuzz FuzzAppendJSON -fuzztime $(FUZZTIME)

## bench: the load comparison against a bare Go server (see docs/performance.md)
bench:
	hack/bench.sh

## e2e: a real single-node cluster, the image, helm install, the examples driven by their
## clients and checked with kubectl, a live rules edit, pause and delete, uninstall, cluster
## down (test/e2e/e2e.sh; root and the Debian packages listed there)
e2e:
	IMAGE=$(IMAGE) test/e2e/e2e.sh

## demo: the same up to the examples, then leaves the cluster running and prints what to try
demo:
	IMAGE=$(IMAGE) test/e2e/e2e.sh demo

## cluster-assets: build (once, cached by version) the binaries of the local cluster
cluster-assets:
	hack/envtest-assets.sh cluster
## cluster-up: a real single-node cluster on this machine (root, Debian packages containerd
## runc containernetworking-plugins iptables)
cluster-up: cluster-assets
	hack/cluster.sh up
## cluster-down: stop the local cluster and remove everything it made (also after a failed up)
cluster-down:
	hack/cluster.sh down
## cluster-status: what the local cluster runs; exits 0 only when everything does
cluster-status:
	hack/cluster.sh status

## image: the parley image (IMAGE) as a docker-archive in dist/, without Docker
image:
	hack/image.sh parley --tag $(IMAGE)
## image-import: the same, loaded into the local cluster
image-import:
	hack/image.sh parley --tag $(IMAGE) --import
## docker-build: the same image from the Dockerfile, with Docker
docker-build:
	docker build -t $(IMAGE) .

## clean: remove bin/ and dist/
clean:
	rm -rf bin dist

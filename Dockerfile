# syntax=docker/dockerfile:1
# The parley image: one static binary on distroless, run as nonroot. hack/image.sh builds the
# same image (same path, user, entrypoint) without Docker for the local test cluster.
#
#   docker build -t ghcr.io/parley-dev/parley:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/parley-dev/parley:dev .

# The build runs on the builder's own platform and cross-compiles, which Go does without cgo.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS TARGETARCH
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w" -o /out/parley ./cmd/parley

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/parley /parley
# Numeric, so that runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/parley"]

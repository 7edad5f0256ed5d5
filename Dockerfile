# One small image holding every workload binary (producer, consumer, remainder, audit, scorecard), static and
# non-root.
# A container runs one of them by naming it as its command, as the 2016 image ran `rake producer`:
#   docker run --rm IMAGE consumer --queue nsq://nsqd:4150/microscaling-demo/microscaling-demo
# Build it with `make image`, which fills the label build args from git and Cargo.toml (`make -n image` shows
# the exact `docker build` command).

# Build arguments for hosts with no image registry (the tests build this image that way, in their own dockerd):
#   BUILD_IMAGE    the Rust toolchain image of the build stage;
#   RUNTIME_IMAGE  the base of the final image: one made locally must hold what the binaries load (nothing for
#                  the static musl build; the C library for a host build: `ldd` lists it), and /tmp;
#   BINARIES       `build` (default: compile in the build stage) or `prebuilt`: take the binaries from
#                  PREBUILT_DIR in the build context, e.g. the ones `cargo build` already made on the host:
#     docker build --build-arg BINARIES=prebuilt --build-arg PREBUILT_DIR=bin --build-arg RUNTIME_IMAGE=my-base CTX
#   (CTX/bin holding the five binaries). BuildKit builds only the stages the final one needs, so a prebuilt
#   build never pulls BUILD_IMAGE. ARGs before the first FROM are the ones FROM lines may use.
ARG BUILD_IMAGE=rust:1.95-alpine3.23
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot
ARG BINARIES=build

# ---- build: static musl binaries (rustls for TLS, SQLite compiled in), so the final image needs no libc.
# rust:alpine targets musl natively: `cargo build` there links statically by default, on amd64 and arm64.
FROM ${BUILD_IMAGE} AS build
# musl-dev: the C runtime that ring (rustls' crypto) and the bundled SQLite compile against.
# DL3018 (pin apk versions) is ignored on purpose: the base tag fixes the Alpine release, and Alpine removes
# superseded package revisions from its mirrors, so an exact `musl-dev=…-rN` pin would break every rebuild
# after the next security fix.
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
# The cache mounts keep the registry and target dir between builds; the binaries are copied out of the
# cached target dir in the same step, since a cache mount is not part of the layer. The `dist` profile is the
# release profile with thin LTO and stripped symbols. No parser directive on the first line: cache mounts are
# in Docker 20.10's built-in frontend, and a directive would make every build fetch a frontend image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked \
        --bin producer --bin consumer --bin remainder --bin audit --bin scorecard \
 && mkdir -p /out \
 && cp target/dist/producer target/dist/consumer target/dist/remainder target/dist/audit target/dist/scorecard /out/

# ---- prebuilt: the same five binaries, built elsewhere (BINARIES=prebuilt).
FROM scratch AS prebuilt
ARG PREBUILT_DIR=bin
COPY ${PREBUILT_DIR}/producer ${PREBUILT_DIR}/consumer ${PREBUILT_DIR}/remainder ${PREBUILT_DIR}/audit ${PREBUILT_DIR}/scorecard /out/

# The stage the final image copies from: `build` or `prebuilt`. DL3006 (tag the image) does not apply: this
# names a stage of this file, not an image.
# hadolint ignore=DL3006
FROM ${BINARIES} AS binaries

# ---- run: distroless static (CA certificates, /etc/passwd with `nonroot`, /tmp; no shell, no package manager).
# DL3006 (tag the image) is met by RUNTIME_IMAGE's default above, which hadolint does not expand.
# hadolint ignore=DL3006
FROM ${RUNTIME_IMAGE}

# Filled by `make image`; the defaults mark an image built without the recipe.
ARG VERSION=unknown
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
ARG VCS_URL=unknown

# OCI image annotations (https://github.com/opencontainers/image-spec/blob/main/annotations.md) and the
# 2016 label-schema.org 1.0 equivalents that the original microscaling images carried.
LABEL org.opencontainers.image.title="queue-workload" \
      org.opencontainers.image.description="Queue workload suite: producer, consumer, remainder, audit and scorecard (NSQ, Azure Storage Queues, SQLite)" \
      org.opencontainers.image.vendor="Microscaling Systems" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${VCS_URL}" \
      org.opencontainers.image.url="${VCS_URL}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.label-schema.schema-version="1.0" \
      org.label-schema.name="queue-workload" \
      org.label-schema.description="Queue workload suite: producer, consumer, remainder, audit and scorecard (NSQ, Azure Storage Queues, SQLite)" \
      org.label-schema.vendor="Microscaling Systems" \
      org.label-schema.license="Apache-2.0" \
      org.label-schema.vcs-url="${VCS_URL}" \
      org.label-schema.vcs-ref="${VCS_REF}" \
      org.label-schema.version="${VERSION}" \
      org.label-schema.build-date="${BUILD_DATE}" \
      org.label-schema.docker.dockerfile="/Dockerfile"

COPY --from=binaries /out/ /usr/local/bin/

# distroless' nonroot user (65532:65532), numeric so that Kubernetes' runAsNonRoot can check it.
USER 65532:65532
# /data, owned by that user: a named volume mounted there starts with this owner, so containers can share a
# sqlite: queue file and the consumers' ledgers on it (compose's sqlite profile). WORKDIR after USER creates
# it with the user's ownership (BuildKit).
WORKDIR /data
# Prometheus /metrics when METRICS_ADDR=:9100 is set (compose and the Kubernetes manifests set it).
EXPOSE 9100
WORKDIR /tmp
# Queue files (sqlite:) and ledgers go under /tmp unless a volume is mounted; nothing else is written.
# No shell here: the command names the binary, e.g. `docker run IMAGE consumer --queue …`. With no command,
# the producer's help is printed.
CMD ["producer", "--help"]

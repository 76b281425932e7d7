# lucid-registry (and lucidctl) for linux/arm64 or linux/amd64, built from the repository root:
#   docker buildx build --platform linux/arm64,linux/amd64 -f deploy/docker/registry.Dockerfile -t lucid-registry .
# The build stage runs natively and cross-compiles (no emulation); the runtime is distroless
# cc, nonroot (uid 65532), no shell. All state lives in the /var/lib/lucid volume, so the
# container runs with a read-only root filesystem. Cluster TLS files and the CA key secret
# come from a mounted volume (deploy/compose's tls-init), never from the image.
#
# The `tls-init` stage (docker build --target tls-init) is lucidctl with busybox's shell, for
# the compose topology's one-shot job that creates the TLS files only when they are absent
# (the runtime image has no shell to test for them).

FROM --platform=$BUILDPLATFORM rust:1.95-bookworm AS build
ARG TARGETARCH
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
 && rm -rf /var/lib/apt/lists/*
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
WORKDIR /src
COPY . .
RUN case "$TARGETARCH" in \
      arm64) target=aarch64-unknown-linux-gnu ;; \
      amd64) target=x86_64-unknown-linux-gnu ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH" >&2; exit 1 ;; \
    esac \
 && rustup target add "$target" \
 && cargo build --profile dist --locked --target "$target" -p lucid-registry -p lucid-ctl \
 && mkdir -p /out/data \
 && cp "target/$target/dist/lucid-registry" "target/$target/dist/lucidctl" /out/

FROM gcr.io/distroless/cc-debian12:debug-nonroot AS tls-init
COPY --from=build /out/lucidctl /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/busybox/sh", "-c"]

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/lucid-registry /out/lucidctl /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/data /var/lib/lucid
USER 65532:65532
ENV LUCID_DATA_DIR=/var/lib/lucid \
    LUCID_HTTP_ADDR=0.0.0.0:8500 \
    LUCID_RAFT_ADDR=0.0.0.0:8300 \
    LUCID_DNS_ADDR=0.0.0.0:8600 \
    LUCID_LOG_FORMAT=json
VOLUME ["/var/lib/lucid"]
# 8500 plain HTTP API, 8501 the same API over TLS (--https-addr), 8300 Raft, 8600 DNS.
EXPOSE 8500/tcp 8501/tcp 8300/tcp 8600/tcp 8600/udp
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/lucid-registry", "health"]
ENTRYPOINT ["/usr/local/bin/lucid-registry"]

# lucid-proxy (the sidecar) for linux/arm64 or linux/amd64, built from the repository root:
#   docker buildx build --platform linux/arm64,linux/amd64 -f deploy/docker/proxy.Dockerfile -t lucid-proxy .
# The build stage runs natively and cross-compiles (no emulation); the runtime is distroless
# cc, nonroot (uid 65532), no shell. The sidecar keeps no state on disk (its key never leaves memory), so the
# container runs with a read-only root filesystem.

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
 && cargo build --profile dist-unwind --locked --target "$target" -p lucid-proxy \
 && mkdir -p /out \
 && cp "target/$target/dist-unwind/lucid-proxy" /out/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/lucid-proxy /usr/local/bin/
USER 65532:65532
ENV LUCID_PROXY_INBOUND_ADDR=0.0.0.0:15001 \
    LUCID_PROXY_OUTBOUND_ADDR=127.0.0.1:15002 \
    LUCID_PROXY_ADMIN_ADDR=127.0.0.1:15000 \
    LUCID_PROXY_LOG_FORMAT=json
EXPOSE 15001/tcp
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/lucid-proxy", "health"]
ENTRYPOINT ["/usr/local/bin/lucid-proxy"]

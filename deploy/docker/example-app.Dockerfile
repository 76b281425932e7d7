# lucid-test-app, the example application behind the sidecars (HTTP/1.1 and h2c;
# answers who it is and what arrived) for linux/arm64 or linux/amd64, built from the repository root:
#   docker buildx build --platform linux/arm64,linux/amd64 -f deploy/docker/example-app.Dockerfile -t lucid-example-app .
# The build stage runs natively and cross-compiles (no emulation); the runtime is distroless
# cc, nonroot (uid 65532), no shell. It keeps no state on disk.

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
 && cargo build --release --locked --target "$target" -p lucid-tests --bin lucid-test-app \
 && mkdir -p /out \
 && cp "target/$target/release/lucid-test-app" /out/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/lucid-test-app /usr/local/bin/
USER 65532:65532
EXPOSE 8080/tcp
ENTRYPOINT ["/usr/local/bin/lucid-test-app", "--port", "8080"]

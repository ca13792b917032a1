# syntax=docker/dockerfile:1
#
# One image, two static binaries: postern-operator (the chart's Deployment runs
# `postern-operator run`) and postern-listener (the Deployments the operator
# creates run `postern-listener --config /etc/postern/config.yaml`).
#
#   buildah bud --layers -t ghcr.io/postern/postern:0.1.0 .      # no daemon needed
#   podman build -t ghcr.io/postern/postern:0.1.0 .
#   docker build -t ghcr.io/postern/postern:0.1.0 .
#
# The tag is the crate version ([workspace.package] version in Cargo.toml), which
# is also the chart's appVersion and the operator's default listener image.
# docs/chart.md says what was verified on the development machine.

ARG RUST_VERSION=1.95
# Static musl binaries by default; the final image has no libc, no shell.
ARG TARGET=x86_64-unknown-linux-musl
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
ARG TARGET
# ring compiles C and assembly: musl-gcc for the musl target.
RUN case "$TARGET" in \
      *-musl) rustup target add "$TARGET" \
              && apt-get update \
              && apt-get install -y --no-install-recommends musl-tools \
              && rm -rf /var/lib/apt/lists/* ;; \
    esac
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target "$TARGET" \
        -p postern-operator -p postern-listener \
    && mkdir -p /out \
    && cp "target/$TARGET/release/postern-operator" "target/$TARGET/release/postern-listener" /out/ \
    && strip /out/postern-operator /out/postern-listener \
    && /out/postern-operator --version && /out/postern-listener --version

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="postern" \
      org.opencontainers.image.description="Postern ESMTP relay: postern-operator and postern-listener" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/postern-operator /out/postern-listener /usr/local/bin/
# distroless "nonroot": uid/gid 65532, the user the chart and the operator's
# listener pods run as (runAsNonRoot needs a numeric user).
USER 65532:65532
EXPOSE 8080 8025
ENTRYPOINT ["/usr/local/bin/postern-operator"]
CMD ["run"]

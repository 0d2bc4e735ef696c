# syntax=docker/dockerfile:1
# The flagger-rs image for those who build with a container engine (docker buildx, podman, buildah):
#   docker build -t flagger-rs:0.1.0 .
# It is the image `make image` (hack/image) assembles without an engine or a base image: a static binary,
# `/flagger` and `/loadtester` names for it, a non-root user and CA certificates, on `scratch`. This repository's
# tests build and run hack/image's image, not this file (no engine or base image is reachable where they run).

FROM rust:1-bookworm AS build
ARG TARGETARCH
WORKDIR /src
COPY . .
# crt-static links glibc into the binary (TLS is rustls with ring: nothing else to link); --target keeps the
# flag off build scripts and proc macros. `dist` is the release profile of the image (Cargo.toml).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    case "${TARGETARCH:-amd64}" in \
      amd64) triple=x86_64-unknown-linux-gnu ;; \
      arm64) triple=aarch64-unknown-linux-gnu ;; \
      *) echo "unsupported TARGETARCH ${TARGETARCH}" >&2; exit 1 ;; \
    esac && \
    RUSTFLAGS="-C target-feature=+crt-static" \
      cargo build --locked --profile dist --target "$triple" -p flagger-rs && \
    mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp && \
    cp "target/$triple/dist/flagger-rs" /rootfs/flagger-rs

# Flagger's charts run `./flagger` and `./loadtester` from the working directory: the binary acts on the name
# it is run under. reqwest verifies HTTPS peers (metric providers, notifiers) against these CA certificates.
RUN ln -s flagger-rs /rootfs/flagger && ln -s flagger-rs /rootfs/loadtester && ln -s flagger-rs /rootfs/kubectl-flagger && \
    chmod 1777 /rootfs/tmp && \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ && \
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin' \
      > /rootfs/etc/passwd && \
    printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' > /rootfs/etc/group

FROM scratch
COPY --from=build /rootfs/ /
USER 65532:65532
WORKDIR /
ENV PATH=/ SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
LABEL org.opencontainers.image.title=flagger-rs org.opencontainers.image.licenses=Apache-2.0
ENTRYPOINT ["/flagger"]

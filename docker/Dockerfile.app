# weknora-app: the HTTP API, as a static binary in an empty image.
#
# `cargo xtask build-images --app` writes this image itself (byte for byte reproducible,
# see docs/operations.md "Images"). This Dockerfile describes the same image for a plain
# `docker build`, from a context that `cargo xtask build-images --app --context-dir DIR`
# assembles (or by hand):
#   RUSTFLAGS="-C target-feature=+crt-static" \
#     cargo build --release --locked --target x86_64-unknown-linux-gnu -p weknora-app
#   mkdir -p ctx/state/data && cp target/x86_64-unknown-linux-gnu/release/weknora-app \
#     /etc/ssl/certs/ca-certificates.crt config/config.yaml ctx/
#   docker build -f docker/Dockerfile.app -t weknora/app:dev ctx
FROM scratch
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY config.yaml /etc/weknora/config.yaml
COPY weknora-app /usr/local/bin/weknora-app
# The working folder; uploaded files go to ./data/files, where a volume is mounted on
# /var/lib/weknora/data (a new volume takes its owner, the unprivileged user, from here).
COPY --chown=65532:65532 state /var/lib/weknora
# The labels `cargo xtask build-images` sets with the build's facts; a plain build gets
# these placeholders unless it passes them (--build-arg VERSION=0.1.0 ...).
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG TOOLCHAIN=unknown
LABEL org.opencontainers.image.title="weknora-app" \
      org.opencontainers.image.description="weknora HTTP API: knowledge bases, documents, ingest, search" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/weknora/weknora" \
      org.opencontainers.image.licenses="MIT" \
      io.github.weknora.toolchain="${TOOLCHAIN}"
ENV PATH=/usr/local/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    WEKNORA_CONFIG=/etc/weknora/config.yaml
WORKDIR /var/lib/weknora
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/weknora-app", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/weknora-app"]

# syntax=docker/dockerfile:1.7
# rcjobs: one binary for workers, migrations, the simulator and the operator CLI.
#
#   docker build -t rcjobs .
#   docker run --rm rcjobs --help
#
# Stage 1 builds a release binary; BuildKit cache mounts keep the crates.io registry and the
# target directory between builds, so only changed crates recompile.
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
# Shown as the `revision` label of rcjobs_build_info: --build-arg RCJOBS_GIT_REVISION=$(git rev-parse --short HEAD)
ARG RCJOBS_GIT_REVISION=unknown
ENV RCJOBS_GIT_REVISION=${RCJOBS_GIT_REVISION}
WORKDIR /src
# The repository alone is the build context (.dockerignore trims it); scripts/validate-deploy.sh
# checks that every path the build reads is in it and that nothing comes from outside.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin rcjobs \
    && install -D -m 0755 target/release/rcjobs /out/rcjobs

# Stage 2: a small Debian runtime (glibc, CA certificates for TLS to Postgres and
# Rocket.Chat, nothing else), running as an unprivileged user with a fixed uid so Kubernetes'
# runAsNonRoot can verify it.
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 rcjobs \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin rcjobs
COPY --from=builder /out/rcjobs /usr/local/bin/rcjobs
USER 10001:10001
# 9464: worker metrics/health (`--metrics-addr`); 3000: the Rocket.Chat simulator (`rcjobs sim`).
EXPOSE 9464 3000
ENV RCJOBS_LOG_FORMAT=json
# rcjobs runs as PID 1: it installs its own SIGTERM/SIGINT handlers (the worker drains on
# them), which is all PID 1 needs; it starts no child processes to reap.
ENTRYPOINT ["rcjobs"]
CMD ["--help"]

# syntax=docker/dockerfile:1
#
# Multi-stage build of the `opsledger` binary (package `opsledger-server`).
#
#   docker build -t opsledger .
#   docker run --rm -p 8080:8080 -e DATABASE_URL=postgres://... opsledger
#
# The build context is the repository root. Everything the workspace needs to
# resolve is copied in: the root Cargo.toml/Cargo.lock, every member listed in
# `members` (services/*, tests, ops/bench), schema/ (SQL migrations embedded at
# compile time by refinery's embed_migrations!("../../schema") in
# services/store) and openapi/ (included with include_str! by services/api).
# .dockerignore keeps target/, .pgdata/ and .git/ out of the context.

############################
# Builder
############################
FROM rust:1-bookworm AS builder

WORKDIR /src

COPY . .

# BuildKit cache mounts keep the cargo registry and the target directory
# between builds. The target directory is a cache mount, so the binary has to
# be copied out of it within the same RUN step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p opsledger-server --bin opsledger \
 && install -D -m 0755 target/release/opsledger /out/opsledger

############################
# Runtime
############################
FROM debian:bookworm-slim AS runtime

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# Unprivileged system user with a fixed numeric id (so that orchestrators
# enforcing runAsNonRoot can verify it).
RUN groupadd --system --gid 10001 opsledger \
 && useradd --system --uid 10001 --gid opsledger \
        --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin opsledger

COPY --from=builder /out/opsledger /usr/local/bin/opsledger

# Where the transparency log's signing key is kept (OPSLEDGER_AUDIT_KEY_FILE):
# owned by the service's user, so that an empty volume mounted here starts
# owned by it too (docker-compose.yml makes the key there on first start).
RUN install -d -o 10001 -g 10001 -m 0700 /var/lib/opsledger

# Inside a container the service must listen on all interfaces to be
# reachable through a published port; override at run time if needed.
ENV OPSLEDGER_BIND=0.0.0.0:8080

USER 10001:10001
WORKDIR /tmp

EXPOSE 8080

ENTRYPOINT ["opsledger"]
CMD ["serve"]

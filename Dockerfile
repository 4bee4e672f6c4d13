# Freshet's image: built from this repository, run as an unprivileged user with a read-only
# root file system (the ECS task definition in deploy/ mounts the state directory).
#   docker build -t freshet:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The dependencies first, in a layer of their own: a change to Freshet's code rebuilds only it.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
# The schema: the load generator and the benchmarks build it into the binary.
COPY schema ./schema
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked
# The RDS certificate authorities, for sslmode=verify-full (pipelines/prod.yaml).
RUN curl --fail --silent --show-error --location --proto '=https' \
    --output /src/rds-global-bundle.pem https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem

FROM debian:bookworm-slim
# CA certificates (the AWS endpoints), and the OpenSSL that librdkafka and the PostgreSQL
# driver link. Unpinned on purpose: the image takes the slim release's security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 freshet \
    && useradd --system --uid 10001 --gid freshet --home-dir /var/lib/freshet --shell /usr/sbin/nologin freshet \
    && install -d -o freshet -g freshet /var/lib/freshet
COPY --from=build /src/target/release/freshet /usr/local/bin/freshet
COPY pipelines/ /etc/freshet/
COPY --from=build --chmod=644 /src/rds-global-bundle.pem /etc/freshet/rds-global-bundle.pem
USER 10001:10001
WORKDIR /var/lib/freshet
ENV FRESHET_STATE_DIR=/var/lib/freshet
# The router, /metrics, /readyz.
EXPOSE 8650
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=4 \
    CMD ["/usr/local/bin/freshet", "status", "--ready"]
ENTRYPOINT ["/usr/local/bin/freshet"]
CMD ["run", "--pipeline", "/etc/freshet/prod.yaml"]

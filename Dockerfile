# The broker in a small image: built with the pinned toolchain, run as a non-root user.
#   docker build -t broker .
#   docker run -p 9092:9092 -p 9324:9324 -v broker-data:/var/lib/broker broker
#   docker run -p 9092:9092 -p 9324:9324 -e BROKER_DATABASE_URL=postgres://... broker
# Clients outside the container need BROKER_ADVERTISED_ADDR=<host they use>:9092.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p broker-server --bin broker \
    && cp target/release/broker /broker

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 broker \
    && useradd --system --uid 10001 --gid broker --home-dir /var/lib/broker --shell /usr/sbin/nologin broker \
    && mkdir -p /var/lib/broker \
    && chown broker:broker /var/lib/broker
COPY --from=build /broker /usr/local/bin/broker
COPY broker.example.toml /etc/broker/broker.example.toml
COPY LICENSE /usr/share/doc/broker/LICENSE
USER broker:broker
ENV BROKER_DATA_DIR=/var/lib/broker \
    BROKER_KAFKA_ADDR=0.0.0.0:9092 \
    BROKER_HTTP_ADDR=0.0.0.0:9324 \
    RUST_LOG=info
VOLUME ["/var/lib/broker"]
EXPOSE 9092 9324
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/broker"]
